/**
 * buildLedPattern against patterns written out by hand from the OpenEPaperLink sources (not from
 * our encoder): the AP firmware's `ledflash` and `ledflash_long` presets (web.cpp, struct ledFlash
 * in oepl-proto.h), whose first one the EFR32 tag firmware (oepl_led.c) spells out byte by byte.
 */
import { describe, expect, it } from 'vitest';
import { buildLedFlash, buildLedPattern, LED_COLOURS, LED_PATTERN_OFF } from '../../src/drivers/oepl';

describe('buildLedPattern', () => {
  it("the AP's `ledflash` preset: 81 3c 13 0a e4 53 0a 03 a3 0a 02 00", () => {
    const p = buildLedPattern({
      flashDuration: 8,
      groups: [
        { colour: 0x3c, flashes: 3, speed: 1, delayAfter: 10 },
        { colour: 0xe4, flashes: 3, speed: 5, delayAfter: 10 },
        { colour: 0x03, flashes: 3, speed: 10, delayAfter: 10 },
      ],
      repeats: 2,
    });
    expect(p).toBe('813C130AE4530A03A30A0200');
  });

  it("the AP's `ledflash_long` preset: one red group, the others zero", () => {
    const p = buildLedPattern({ flashDuration: 1, groups: [{ colour: 0xe4, flashes: 3, speed: 3, delayAfter: 50 }], repeats: 60 });
    expect(p).toBe('11E433320000000000003C00');
  });

  it('mode 1 sits in the low nibble of byte 0, the on-time in the high nibble', () => {
    const p = buildLedPattern({ flashDuration: 2, groups: [{ colour: LED_COLOURS.green, flashes: 1, speed: 15, delayAfter: 255 }], repeats: 0 });
    expect(p).toBe('211CF1FF0000000000000000');
  });

  it('refuses fields out of range and a wrong number of groups', () => {
    const g = { colour: 0xe0, flashes: 3, speed: 2, delayAfter: 5 };
    expect(() => buildLedPattern({ flashDuration: 16, groups: [g], repeats: 0 })).toThrow(/flashDuration must be an integer 0-15/);
    expect(() => buildLedPattern({ flashDuration: 8, groups: [{ ...g, flashes: 16 }], repeats: 0 })).toThrow(/flashes must be an integer 0-15/);
    expect(() => buildLedPattern({ flashDuration: 8, groups: [{ ...g, colour: 256 }], repeats: 0 })).toThrow(/colour/);
    expect(() => buildLedPattern({ flashDuration: 8, groups: [g], repeats: 1.5 })).toThrow(/repeats/);
    expect(() => buildLedPattern({ flashDuration: 8, groups: [], repeats: 0 })).toThrow(/1 to 3 flash groups/);
    expect(() => buildLedPattern({ flashDuration: 8, groups: [g, g, g, g], repeats: 0 })).toThrow(/1 to 3 flash groups/);
    let err: unknown = null;
    try {
      buildLedPattern({ flashDuration: -1, groups: [g], repeats: 0 });
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string } | null)?.code).toBe('SG_REQUEST_INVALID');
  });

  it('the stop pattern is twelve zero bytes, accepted by /led_flash', () => {
    expect(LED_PATTERN_OFF).toBe('000000000000000000000000');
    expect(new URL(`http://ap${buildLedFlash('0218C9073B10', LED_PATTERN_OFF).path}`).searchParams.get('pattern')).toBe('000000000000000000000000');
  });
});
