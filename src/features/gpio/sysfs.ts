/**
 * Finding the sysfs number of a BCM pin: sysfs number = base of the SoC's gpiochip + BCM number.
 *
 * The base is not a constant. Raspberry Pi OS kernels before 6.6 gave the SoC's chip base 0 (so
 * sysfs 17 was GPIO17); since 6.6 the kernel allocates sysfs bases from 512 upward, so GPIO17 is
 * 529 on a Pi 4 (chip `pinctrl-bcm2711`, base 512) and 588 on a Pi 5 (chip `pinctrl-rp1`, base 571,
 * after the SoC's own chips). Other chips (the firmware's expander `raspberrypi-exp-gpio`, the
 * BCM2712's own `gpio-brcmstb`) sit beside it, so the chip is picked by its label, never by its
 * position. Public sources: the Linux sysfs GPIO ABI (Documentation/ABI/obsolete/sysfs-gpio: each
 * `gpiochipN` has `base`, `label`, `ngpio`), and the onoff issue tracker (fivdi/onoff #199, #200:
 * after the Bookworm 6.6 kernel, exports of bare BCM numbers fail with EINVAL; the base is 512 on a
 * Pi 4 and 571 on a Pi 5, and `cat /sys/kernel/debug/gpio` shows it).
 *
 * The root is a parameter (`gpio.sysfs_root`, default /sys) so tests run the discovery on a fake
 * tree of plain files. onoff itself always opens /sys/class/gpio: the root is for the discovery.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, ShelfgateError } from '../../errors';

/** Labels of the gpiochips whose line numbers are the BCM numbers of the 40-pin header. */
export const SOC_GPIO_LABELS: readonly string[] = [
  'pinctrl-bcm2835', // Pi 1, 2, 3, Zero (and Pi 3 on 64-bit kernels)
  'pinctrl-bcm2711', // Pi 4, 400, CM4
  'pinctrl-rp1', // Pi 5, 500, CM5 (the header is on the RP1 I/O controller)
];

export interface GpioChip {
  /** Directory name, e.g. `gpiochip512`. */
  name: string;
  label: string;
  base: number;
  ngpio: number;
}

function readTrim(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

/** Every gpiochip under `<sysfsRoot>/class/gpio`; throws TRANSPORT_OPEN_FAILED when there is no GPIO sysfs at all. */
export function listGpioChips(sysfsRoot: string): GpioChip[] {
  const dir = join(sysfsRoot, 'class', 'gpio');
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (e) {
    throw new ShelfgateError(
      ErrorCode.TRANSPORT_OPEN_FAILED,
      `no GPIO sysfs at ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): not a board with GPIO, or a kernel without CONFIG_GPIO_SYSFS`,
    );
  }
  const chips: GpioChip[] = [];
  for (const name of entries.filter((n) => /^gpiochip\d+$/.test(n)).sort()) {
    try {
      const base = Number(readTrim(join(dir, name, 'base')));
      const ngpio = Number(readTrim(join(dir, name, 'ngpio')));
      const label = readTrim(join(dir, name, 'label'));
      if (Number.isInteger(base) && base >= 0 && Number.isInteger(ngpio) && ngpio > 0) chips.push({ name, label, base, ngpio });
    } catch {
      // a chip without readable attributes is not one we can use; it is named in no error
    }
  }
  return chips;
}

function describe(chips: readonly GpioChip[]): string {
  return chips.length === 0 ? 'no gpiochip' : chips.map((c) => `${c.name} (label "${c.label}", base ${c.base}, ${c.ngpio} lines)`).join(', ');
}

/**
 * The gpiochip carrying the BCM numbers: the one labelled `chipLabel` if given, else the one whose
 * label is in SOC_GPIO_LABELS. Throws CONFIG_INVALID naming every chip found when none (or more
 * than one) matches.
 */
export function findSocChip(sysfsRoot: string, chipLabel?: string): GpioChip {
  const chips = listGpioChips(sysfsRoot);
  const wanted = chipLabel !== undefined ? [chipLabel] : SOC_GPIO_LABELS;
  const hits = chips.filter((c) => wanted.includes(c.label));
  const where = join(sysfsRoot, 'class', 'gpio');
  if (hits.length === 1) return hits[0]!;
  if (hits.length === 0)
    throw new ShelfgateError(
      ErrorCode.CONFIG_INVALID,
      `no gpiochip labelled ${wanted.map((w) => `"${w}"`).join(' or ')} in ${where}; found: ${describe(chips)}. ` +
        (chipLabel !== undefined ? 'Check gpio.chip_label.' : 'Not a Raspberry Pi this gateway knows: set gpio.chip_label to the label of the chip whose lines are the pin numbers you configure.'),
    );
  throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `more than one gpiochip matches in ${where}: ${describe(hits)}; set gpio.chip_label to pick one`);
}

/** The sysfs number of BCM pin `pin` on `chip`; throws CONFIG_INVALID when the chip has no such line. */
export function sysfsNumber(chip: GpioChip, pin: number): number {
  if (!Number.isInteger(pin) || pin < 0 || pin >= chip.ngpio)
    throw new ShelfgateError(ErrorCode.CONFIG_INVALID, `BCM pin ${pin} does not exist on ${chip.name} ("${chip.label}", ${chip.ngpio} lines: 0..${chip.ngpio - 1})`);
  return chip.base + pin;
}
