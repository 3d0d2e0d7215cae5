/**
 * Finding the sysfs number of a BCM pin on fake sysfs trees (plain files, laid out as the kernel
 * shows them): a Pi 4 on a 6.6 kernel (pinctrl-bcm2711 at base 512 beside the firmware's expander),
 * a Pi 5 (pinctrl-rp1 at 571 after the BCM2712's own chips), an old kernel (base 0), an unknown
 * board (the error names every chip found), a chip_label override, a pin beyond ngpio, and no GPIO
 * sysfs at all. Also the onoff backend on an injected onoff module: what it exports for BCM pins,
 * and the clear error when onoff's Gpio.accessible is false (this machine has no GPIO).
 */
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, ShelfgateError } from '../../src/errors';
import { OnoffBackend, type OnoffGpio, type OnoffModule } from '../../src/features/gpio/onoff-backend';
import { findSocChip, listGpioChips, sysfsNumber } from '../../src/features/gpio/sysfs';

const roots: string[] = [];
afterEach(() => {
  while (roots.length) rmSync(roots.pop()!, { recursive: true, force: true });
});

/** A fake `<root>/class/gpio` with the given chips (and the export/unexport files the kernel has). */
function tree(chips: Array<{ base: number; ngpio: number; label: string }>): string {
  const root = mkdtempSync(join(tmpdir(), 'sg-sysfs-'));
  roots.push(root);
  const dir = join(root, 'class', 'gpio');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'export'), '');
  writeFileSync(join(dir, 'unexport'), '');
  for (const c of chips) {
    const d = join(dir, `gpiochip${c.base}`);
    mkdirSync(d);
    writeFileSync(join(d, 'base'), `${c.base}\n`);
    writeFileSync(join(d, 'ngpio'), `${c.ngpio}\n`);
    writeFileSync(join(d, 'label'), `${c.label}\n`);
  }
  return root;
}

const PI4_66 = [
  { base: 512, ngpio: 58, label: 'pinctrl-bcm2711' },
  { base: 570, ngpio: 8, label: 'raspberrypi-exp-gpio' },
];
const PI5_66 = [
  { base: 512, ngpio: 32, label: 'gpio-brcmstb@107d508500' },
  { base: 544, ngpio: 4, label: 'gpio-brcmstb@107d508520' },
  { base: 548, ngpio: 17, label: 'gpio-brcmstb@107d517c00' },
  { base: 565, ngpio: 6, label: 'gpio-brcmstb@107d517c20' },
  { base: 571, ngpio: 54, label: 'pinctrl-rp1' },
];

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    return { code: (e as ShelfgateError).code, message: (e as Error).message };
  }
  throw new Error('did not throw');
}

describe('gpiochip discovery', () => {
  it('Pi 4 on kernel 6.6: pinctrl-bcm2711 at base 512, so BCM 17 is sysfs 529', () => {
    const chip = findSocChip(tree(PI4_66));
    expect(chip).toEqual({ name: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 });
    expect(sysfsNumber(chip, 17)).toBe(529);
    expect(sysfsNumber(chip, 57)).toBe(569);
  });

  it('Pi 5: pinctrl-rp1 at base 571 among the BCM2712 chips, so BCM 17 is sysfs 588', () => {
    const chip = findSocChip(tree(PI5_66));
    expect(chip).toMatchObject({ name: 'gpiochip571', label: 'pinctrl-rp1', base: 571, ngpio: 54 });
    expect(sysfsNumber(chip, 17)).toBe(588);
  });

  it('an old kernel (Pi 3, base 0): BCM numbers are the sysfs numbers', () => {
    const chip = findSocChip(tree([{ base: 0, ngpio: 54, label: 'pinctrl-bcm2835' }, { base: 504, ngpio: 8, label: 'raspberrypi-exp-gpio' }]));
    expect(sysfsNumber(chip, 4)).toBe(4);
  });

  it('an unknown board: CONFIG_INVALID naming every chip found and the way out (chip_label)', () => {
    const root = tree([
      { base: 0, ngpio: 32, label: '209c000.gpio' },
      { base: 32, ngpio: 32, label: '20a0000.gpio' },
    ]);
    const e = codeOf(() => findSocChip(root));
    expect(e.code).toBe(ErrorCode.CONFIG_INVALID);
    expect(e.message).toContain('gpiochip0 (label "209c000.gpio", base 0, 32 lines)');
    expect(e.message).toContain('gpiochip32 (label "20a0000.gpio", base 32, 32 lines)');
    expect(e.message).toContain('pinctrl-rp1');
    expect(e.message).toContain('gpio.chip_label');
    // with the label given, that chip is used
    expect(findSocChip(root, '20a0000.gpio')).toMatchObject({ base: 32, ngpio: 32 });
  });

  it('a pin beyond the chip`s lines: CONFIG_INVALID with the chip and its range', () => {
    const chip = findSocChip(tree(PI5_66));
    const e = codeOf(() => sysfsNumber(chip, 54));
    expect(e.code).toBe(ErrorCode.CONFIG_INVALID);
    expect(e.message).toBe('BCM pin 54 does not exist on gpiochip571 ("pinctrl-rp1", 54 lines: 0..53)');
    expect(sysfsNumber(chip, 53)).toBe(624);
  });

  it('two chips with one known label: refused, not guessed', () => {
    const e = codeOf(() => findSocChip(tree([{ base: 0, ngpio: 54, label: 'pinctrl-bcm2835' }, { base: 100, ngpio: 54, label: 'pinctrl-bcm2835' }])));
    expect(e.code).toBe(ErrorCode.CONFIG_INVALID);
    expect(e.message).toMatch(/more than one gpiochip/);
  });

  it('no GPIO sysfs at all: TRANSPORT_OPEN_FAILED naming the directory', () => {
    const root = mkdtempSync(join(tmpdir(), 'sg-sysfs-'));
    roots.push(root);
    const e = codeOf(() => listGpioChips(root));
    expect(e.code).toBe(ErrorCode.TRANSPORT_OPEN_FAILED);
    expect(e.message).toContain(join(root, 'class', 'gpio'));
    expect(e.message).toContain('ENOENT');
  });
});

/** An onoff module that records what it was asked (onoff's own constructor writes /sys/class/gpio). */
function fakeOnoff(accessible: boolean) {
  const made: Array<{ gpio: number; direction: string; edge?: string; gpioObj: OnoffGpio & { value: 0 | 1; cb: ((err: Error | null, v: 0 | 1) => void) | null; unexported: boolean } }> = [];
  class Gpio {
    static readonly accessible = accessible;
    value: 0 | 1;
    cb: ((err: Error | null, v: 0 | 1) => void) | null = null;
    unexported = false;
    constructor(gpio: number, direction: string, edge?: string) {
      this.value = direction === 'high' ? 1 : 0;
      made.push({ gpio, direction, ...(edge !== undefined ? { edge } : {}), gpioObj: this as never });
    }
    readSync(): 0 | 1 {
      return this.value;
    }
    writeSync(v: 0 | 1): void {
      this.value = v;
    }
    watch(cb: (err: Error | null, v: 0 | 1) => void): void {
      this.cb = cb;
    }
    unwatchAll(): void {
      this.cb = null;
    }
    unexport(): void {
      this.unexported = true;
    }
  }
  return { mod: { Gpio } as unknown as OnoffModule, made };
}

describe('onoff backend (injected onoff)', () => {
  it('exports base + BCM: an input with edge both, an output straight at its level; only inputs are unexported on close', async () => {
    const { mod, made } = fakeOnoff(true);
    const b = new OnoffBackend({ sysfsRoot: tree(PI4_66), load: () => mod });
    await b.open();
    expect(b.chip).toMatchObject({ label: 'pinctrl-bcm2711', base: 512 });
    const levels: number[] = [];
    const inp = b.openInput(17, (l) => levels.push(l), () => undefined);
    const out = b.openOutput(27, 1);
    expect(made.map((m) => [m.gpio, m.direction, m.edge])).toEqual([
      [529, 'in', 'both'],
      [539, 'high', 'none'],
    ]);
    made[0]!.gpioObj.cb!(null, 1);
    made[0]!.gpioObj.cb!(null, 0);
    expect(levels).toEqual([1, 0]);
    out.write(0);
    expect(out.read()).toBe(0);
    inp.close();
    out.close();
    expect(made[0]!.gpioObj.unexported).toBe(true);
    expect(made[1]!.gpioObj.unexported).toBe(false);
    // a pin the chip does not have is refused before onoff is asked
    expect(() => b.openInput(58, () => undefined, () => undefined)).toThrow(/BCM pin 58 does not exist on gpiochip512/);
    expect(made).toHaveLength(2);
  });

  it('Gpio.accessible false (no GPIO on this machine, or no permission): open() fails with TRANSPORT_OPEN_FAILED and says why', async () => {
    const { mod } = fakeOnoff(false);
    const b = new OnoffBackend({ sysfsRoot: tree(PI5_66), load: () => mod });
    await expect(b.open()).rejects.toMatchObject({ code: ErrorCode.TRANSPORT_OPEN_FAILED, message: expect.stringContaining('/sys/class/gpio/export cannot be opened for writing') });
  });

  it('the real onoff: with a fake tree the discovery passes, and open() fails cleanly exactly when /sys/class/gpio/export is not writable here', async () => {
    let writable = true;
    try {
      accessSync('/sys/class/gpio/export', constants.W_OK);
    } catch {
      writable = false;
    }
    const b = new OnoffBackend({ sysfsRoot: tree(PI4_66) });
    const err = await b.open().then(
      () => null,
      (e: ShelfgateError) => e,
    );
    if (writable) expect(err).toBeNull();
    else expect(err).toMatchObject({ code: ErrorCode.TRANSPORT_OPEN_FAILED, message: expect.stringContaining('no GPIO sysfs, or the user is not in the gpio group') });
  });
});
