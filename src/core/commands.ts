/**
 * Commands, independent of the transport that carries them (MQTT request/response today; HTTP
 * and the technician CLI use the same registry). A feature declares each command with its
 * permission and its payload schema; the ACL reads the permission from here instead of guessing
 * it from the command's name, and the payload is validated before the handler sees it.
 *
 * Permissions are ordered capabilities; a role holds a set of them:
 *
 * | permission | what it allows                          | roles                          |
 * |------------|-----------------------------------------|--------------------------------|
 * | read       | queries that change nothing (stock.get) | kiosk, service, technician, admin |
 * | operate    | store operations that change state      | service, technician, admin     |
 * | calibrate  | changes to how sensors are read         | technician, admin              |
 * | admin      | gateway administration                  | admin                          |
 *
 * A command nobody registered needs `operate` to be sent (so a kiosk is refused at publish and a
 * service user gets a clear not-found answer).
 */
import { z } from 'zod';
import type { Role } from '../bus/auth';
import { formatPath } from '../config/load';
import { isValidCommand } from '../bus/topics';
import { ErrorCode, ShelfgateError } from '../errors';

export type Permission = 'read' | 'operate' | 'calibrate' | 'admin';

export const ROLE_PERMISSIONS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  device: new Set(),
  kiosk: new Set(['read']),
  service: new Set(['read', 'operate']),
  technician: new Set(['read', 'operate', 'calibrate']),
  admin: new Set(['read', 'operate', 'calibrate', 'admin']),
};

/** The permission an unregistered command needs (it is answered "unknown command"). */
export const UNKNOWN_COMMAND_PERMISSION: Permission = 'operate';

export function roleHas(role: Role, p: Permission): boolean {
  return ROLE_PERMISSIONS[role]?.has(p) ?? false;
}

export interface Caller {
  username: string;
  role: Role;
  /** Which transport carried the command (for the log). */
  via: 'mqtt' | 'http' | 'internal';
}

/** A command as a feature declares it, statically: the ACL and the docs read this. */
export interface CommandDecl<S extends z.ZodType = z.ZodType> {
  /** `area.verb`, e.g. `calibrate.tare` (it is an MQTT topic level: bus/topics.ts isValidCommand). */
  name: string;
  permission: Permission;
  /** One line, for `--help` texts and docs. */
  description: string;
  /** Validates the request payload (the transport's envelope, e.g. `transaction`, is stripped first). */
  payload: S;
}

export type CommandHandler<S extends z.ZodType = z.ZodType> = (payload: z.output<S>, caller: Caller) => Promise<unknown>;

/** Keeps the payload type of a declaration. */
export function declareCommand<S extends z.ZodType>(decl: CommandDecl<S>): CommandDecl<S> {
  return decl;
}

/** Binds a handler to its declaration with matching payload types. */
export function handle<S extends z.ZodType>(decl: CommandDecl<S>, handler: CommandHandler<S>): { decl: CommandDecl; handler: CommandHandler } {
  return { decl: decl as CommandDecl, handler: handler as CommandHandler };
}

export class CommandRegistry {
  private readonly defs = new Map<string, { owner: string; def: CommandDecl; handler: CommandHandler | null }>();

  /** Declares commands (their permissions count for the ACL from now on); handlers are bound with `bind`. */
  declare(owner: string, decls: readonly CommandDecl[]): void {
    for (const def of decls) {
      if (!isValidCommand(def.name)) throw new Error(`command name ${JSON.stringify(def.name)} is not a valid command name`);
      const prev = this.defs.get(def.name);
      if (prev) throw new Error(`command ${def.name} is declared by both ${prev.owner} and ${owner}`);
      this.defs.set(def.name, { owner, def, handler: null });
    }
  }

  /** Binds the handler of a command `owner` declared. */
  bind(owner: string, b: { decl: CommandDecl; handler: CommandHandler }): void {
    const entry = this.defs.get(b.decl.name);
    if (!entry || entry.owner !== owner) throw new Error(`${owner} binds a handler for ${b.decl.name}, which it did not declare`);
    if (entry.handler) throw new Error(`command ${b.decl.name} already has a handler`);
    entry.handler = b.handler;
  }

  /** Names of declared commands that have no handler (the gateway refuses to start with any). */
  unbound(): string[] {
    return [...this.defs.values()].filter((e) => !e.handler).map((e) => e.def.name);
  }

  /** The permission `name` needs to be sent; unregistered commands need UNKNOWN_COMMAND_PERMISSION. */
  permissionOf(name: string): Permission {
    return this.defs.get(name)?.def.permission ?? UNKNOWN_COMMAND_PERMISSION;
  }

  /** Whether `name` is declared and has a handler (a feature that is not configured may still declare its commands). */
  has(name: string): boolean {
    return !!this.defs.get(name)?.handler;
  }

  may(role: Role, name: string): boolean {
    return roleHas(role, this.permissionOf(name));
  }


  /**
   * Runs a command for `caller`. Throws ShelfgateError NOT_FOUND (unknown command),
   * BUS_NOT_AUTHORIZED (permission), REQUEST_INVALID (payload, every problem listed), or whatever
   * the handler throws.
   */
  async execute(name: string, payload: unknown, caller: Caller): Promise<unknown> {
    const entry = this.defs.get(name);
    if (!entry) throw new ShelfgateError(ErrorCode.NOT_FOUND, `unknown command: ${name}`);
    const { def, handler } = entry;
    if (!handler) throw new ShelfgateError(ErrorCode.NOT_FOUND, `command ${name} is declared but not available`);
    if (!roleHas(caller.role, def.permission))
      throw new ShelfgateError(ErrorCode.BUS_NOT_AUTHORIZED, `${name} needs the ${def.permission} permission, which role ${caller.role} does not have`);
    const parsed = def.payload.safeParse(payload ?? {});
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => (i.path.length ? `${formatPath(i.path)}: ${i.message}` : i.message));
      throw new ShelfgateError(ErrorCode.REQUEST_INVALID, `${name}: ${problems.join('; ')}`, { issues: problems });
    }
    return handler(parsed.data, caller);
  }
}
