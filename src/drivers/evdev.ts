/**
 * USB keyboard-wedge (HID) barcode scanners through Linux input events: a pure codec, no I/O
 * (docs/scanners.md). A scanner in its factory HID mode types the code as key presses; Linux
 * hands them to readers of `/dev/input/by-id/usb-...-event-kbd` as `struct input_event` records
 * (linux/input.h):
 *
 *   64-bit userspace (x64, arm64): 24 bytes = time (2 x 8-byte long: sec, usec), u16 type, u16 code, s32 value
 *   32-bit userspace (armhf, ia32): 16 bytes = time (2 x 4-byte long), u16 type, u16 code, s32 value
 *
 * The size follows the reading process's word size (a 32-bit process on a 64-bit kernel gets the
 * 16-byte compat layout, and 32-bit userspace built with 64-bit time_t keeps 4-byte `__sec`/`__usec`
 * in this struct), so it is chosen from `process.arch`, with a config override.
 *
 * Event types and codes are linux/input-event-codes.h: EV_SYN 0 (SYN_REPORT 0 ends a packet,
 * SYN_DROPPED 3: the kernel's buffer overflowed and events were lost), EV_KEY 1 (value 1 press,
 * 0 release, 2 autorepeat), EV_MSC 4 (scan codes; ignored).
 *
 * Design choices:
 * - US layout (the scanners' factory keyboard country). Characters come from presses; autorepeats
 *   are ignored and counted (a scanner never means a held key: a repeat the kernel synthesises
 *   after a slow release would double a digit, making another, possibly valid, code).
 * - Modifiers are tracked: Shift (both), Ctrl (both), Alt (both). Ctrl + key gives the ASCII
 *   control character (Ctrl+] = GS 0x1D, how many scanners send GS1's FNC1 in HID mode); Alt held
 *   while keypad digits are typed gives the character of that decimal code at Alt's release
 *   (Alt+0029 = GS, the other common setting). Keypad digits, `.`, `*`, `-`, `+`, `/` type
 *   themselves (scanners assume Num Lock on). Caps Lock and Num Lock presses are ignored: the
 *   scanner's own shift decides the case.
 * - A line ends at Enter (or keypad Enter), or at Tab when the scanner's suffix is set to Tab. A key
 *   with no character in this keymap, a control character other than GS, or SYN_DROPPED poisons the
 *   current line: it ends as a rejected line (`unmapped`, `control`, `dropped`), never as a guess.
 *   After SYN_DROPPED the modifier state is unknown and is reset (nothing held).
 * - Lines are bounded by `maxLineChars` like the serial framer (`overlong`).
 */
import { endianness } from 'node:os';

export type EvdevRecordSize = 16 | 24;

/** The struct input_event size for this process: 24 on 64-bit, 16 on 32-bit userspace. */
export function inputEventSize(arch: string = process.arch): EvdevRecordSize {
  return ['arm', 'ia32', 'mips', 'mipsel', 'ppc', 's390'].includes(arch) ? 16 : 24;
}

export const EV_SYN = 0;
export const EV_KEY = 1;
export const SYN_DROPPED = 3;

export const KEY = {
  TAB: 15,
  ENTER: 28,
  LEFTCTRL: 29,
  LEFTSHIFT: 42,
  RIGHTSHIFT: 54,
  LEFTALT: 56,
  CAPSLOCK: 58,
  NUMLOCK: 69,
  KPENTER: 96,
  RIGHTCTRL: 97,
  RIGHTALT: 100,
} as const;

/** Key code -> [unshifted, shifted] on a US keyboard (linux/input-event-codes.h). */
export const US_KEYMAP: ReadonlyMap<number, readonly [string, string]> = (() => {
  const m = new Map<number, readonly [string, string]>();
  const row = (first: number, plain: string, shifted: string): void => {
    for (let i = 0; i < plain.length; i++) m.set(first + i, [plain[i]!, shifted[i]!]);
  };
  row(2, '1234567890-=', '!@#$%^&*()_+'); // KEY_1 2 .. KEY_0 11, KEY_MINUS 12, KEY_EQUAL 13
  row(16, 'qwertyuiop[]', 'QWERTYUIOP{}'); // KEY_Q 16 .. KEY_P 25, KEY_LEFTBRACE 26, KEY_RIGHTBRACE 27
  row(30, "asdfghjkl;'`", 'ASDFGHJKL:"~'); // KEY_A 30 .. KEY_L 38, KEY_SEMICOLON 39, KEY_APOSTROPHE 40, KEY_GRAVE 41
  row(43, '\\zxcvbnm,./', '|ZXCVBNM<>?'); // KEY_BACKSLASH 43, KEY_Z 44 .. KEY_M 50, KEY_COMMA 51, KEY_DOT 52, KEY_SLASH 53
  m.set(57, [' ', ' ']); // KEY_SPACE
  return m;
})();

/** Keypad keys -> character (Num Lock on). */
const KEYPAD: ReadonlyMap<number, string> = new Map([
  [71, '7'], [72, '8'], [73, '9'], [74, '-'], [75, '4'], [76, '5'], [77, '6'], [78, '+'],
  [79, '1'], [80, '2'], [81, '3'], [82, '0'], [83, '.'], [55, '*'], [98, '/'],
]);

export interface InputEvent {
  type: number;
  code: number;
  value: number;
}

/** Splits a byte stream into input_event records (a read may in principle end inside one). */
export class InputEventParser {
  private readonly size: EvdevRecordSize;
  private readonly le: boolean;
  private readonly partial: Buffer;
  private have = 0;

  constructor(size: EvdevRecordSize = inputEventSize(), byteOrder: 'LE' | 'BE' = endianness()) {
    this.size = size;
    this.le = byteOrder === 'LE';
    this.partial = Buffer.alloc(size);
  }

  push(chunk: Buffer, onEvent: (e: InputEvent) => void): void {
    let i = 0;
    if (this.have > 0) {
      const n = Math.min(this.size - this.have, chunk.length);
      chunk.copy(this.partial, this.have, 0, n);
      this.have += n;
      i = n;
      if (this.have < this.size) return;
      this.emit(this.partial, 0, onEvent);
      this.have = 0;
    }
    for (; i + this.size <= chunk.length; i += this.size) this.emit(chunk, i, onEvent);
    if (i < chunk.length) {
      chunk.copy(this.partial, 0, i);
      this.have = chunk.length - i;
    }
  }

  reset(): void {
    this.have = 0;
  }

  private emit(b: Buffer, at: number, onEvent: (e: InputEvent) => void): void {
    const o = at + this.size - 8; // type, code, value are the last 8 bytes in both layouts
    onEvent(
      this.le
        ? { type: b.readUInt16LE(o), code: b.readUInt16LE(o + 2), value: b.readInt32LE(o + 4) }
        : { type: b.readUInt16BE(o), code: b.readUInt16BE(o + 2), value: b.readInt32BE(o + 4) },
    );
  }
}

export type HidLine = { ok: true; line: string } | { ok: false; reason: 'control' | 'overlong' | 'unmapped' | 'dropped'; detail: string };

export interface KeyboardWedgeOptions {
  /** The key that ends a read: Enter (and keypad Enter), or Tab. Default enter. */
  terminator?: 'enter' | 'tab';
  /** Longest accepted read, characters. Default 512. */
  maxLineChars?: number;
  recordSize?: EvdevRecordSize;
  byteOrder?: 'LE' | 'BE';
}

export interface KeyboardWedgeStats {
  /** input_event records read. */
  events: number;
  /** Autorepeat key events ignored. */
  autorepeats: number;
  /** SYN_DROPPED records (the kernel lost events). */
  synDropped: number;
}

/** Input-event bytes -> typed lines (see the file comment). */
export class KeyboardWedgeDecoder {
  readonly stats: KeyboardWedgeStats = { events: 0, autorepeats: 0, synDropped: 0 };
  private readonly parser: InputEventParser;
  private readonly endKey: number;
  private readonly max: number;
  private chars: string[] = [];
  private poison: { reason: 'control' | 'overlong' | 'unmapped' | 'dropped'; detail: string } | null = null;
  private shift = new Set<number>();
  private ctrl = new Set<number>();
  private alt = new Set<number>();
  /** Keypad digits typed while Alt is held (Alt+0029). */
  private altCode: string | null = null;
  private out: HidLine[] = [];
  private readonly onEvent = (e: InputEvent): void => this.event(e);

  constructor(opts: KeyboardWedgeOptions = {}) {
    this.parser = new InputEventParser(opts.recordSize ?? inputEventSize(), opts.byteOrder ?? endianness());
    this.endKey = opts.terminator === 'tab' ? KEY.TAB : KEY.ENTER;
    this.max = opts.maxLineChars ?? 512;
  }

  push(chunk: Buffer): HidLine[] {
    this.out = [];
    this.parser.push(chunk, this.onEvent);
    return this.out;
  }

  reset(): void {
    this.parser.reset();
    this.clearLine();
    this.shift.clear();
    this.ctrl.clear();
    this.alt.clear();
    this.altCode = null;
  }

  private clearLine(): void {
    this.chars = [];
    this.poison = null;
  }

  private poisonWith(reason: 'control' | 'overlong' | 'unmapped' | 'dropped', detail: string): void {
    if (!this.poison) this.poison = { reason, detail };
  }

  private event(e: InputEvent): void {
    this.stats.events++;
    if (e.type === EV_SYN && e.code === SYN_DROPPED) {
      this.stats.synDropped++;
      this.poisonWith('dropped', 'the kernel dropped input events (SYN_DROPPED)');
      this.shift.clear();
      this.ctrl.clear();
      this.alt.clear();
      this.altCode = null;
      return;
    }
    if (e.type !== EV_KEY) return;
    const code = e.code;
    if (e.value === 2) {
      this.stats.autorepeats++;
      return;
    }
    const down = e.value === 1;
    if (code === KEY.LEFTSHIFT || code === KEY.RIGHTSHIFT) return void (down ? this.shift.add(code) : this.shift.delete(code));
    if (code === KEY.LEFTCTRL || code === KEY.RIGHTCTRL) return void (down ? this.ctrl.add(code) : this.ctrl.delete(code));
    if (code === KEY.LEFTALT || code === KEY.RIGHTALT) {
      if (down) {
        this.alt.add(code);
        if (this.altCode === null) this.altCode = '';
      } else {
        this.alt.delete(code);
        if (this.alt.size === 0) this.endAltCode();
      }
      return;
    }
    if (!down) return;
    if (code === KEY.CAPSLOCK || code === KEY.NUMLOCK) return;
    if (this.alt.size > 0) {
      const d = KEYPAD.get(code);
      if (d !== undefined && /\d/.test(d) && this.altCode !== null && this.altCode.length < 4) this.altCode += d;
      else this.poisonWith('unmapped', `Alt + key ${code}`);
      return;
    }
    if (code === this.endKey || (this.endKey === KEY.ENTER && code === KEY.KPENTER)) return this.endLine();
    const ch = this.charOf(code);
    if (ch === null) return this.poisonWith('unmapped', `key ${code} has no character in the US keymap`);
    this.addChar(ch);
  }

  private charOf(code: number): string | null {
    const k = US_KEYMAP.get(code);
    if (k) {
      const c = this.shift.size > 0 ? k[1] : k[0];
      if (this.ctrl.size === 0) return c;
      const u = c.toUpperCase().charCodeAt(0);
      return u >= 0x40 && u <= 0x5f ? String.fromCharCode(u & 0x1f) : null; // Ctrl+] = GS
    }
    if (this.ctrl.size > 0) return null;
    return KEYPAD.get(code) ?? null;
  }

  private endAltCode(): void {
    const digits = this.altCode;
    this.altCode = null;
    if (digits) this.addChar(String.fromCharCode(Number(digits) % 256));
  }

  private addChar(ch: string): void {
    const b = ch.charCodeAt(0);
    if ((b < 0x20 && b !== 0x1d) || b === 0x7f) this.poisonWith('control', `control character 0x${b.toString(16).padStart(2, '0')}`);
    if (this.chars.length >= this.max) return this.poisonWith('overlong', `longer than ${this.max} characters`);
    this.chars.push(ch);
  }

  private endLine(): void {
    if (this.poison) this.out.push({ ok: false, ...this.poison });
    else if (this.chars.length > 0) this.out.push({ ok: true, line: this.chars.join('') });
    this.clearLine();
  }
}
