/**
 * The `product` change type's validation (src/features/labels/products.ts), the slot change's
 * generic attributes (src/sync/prices.ts) as the wire hands them on, and the central simulator's
 * product sources (its price CSV's name/net_content columns, its demo catalogue). Inputs are
 * hand-written literals, not made by the code under test.
 */
import { describe, expect, it } from 'vitest';
import { validateProduct } from '../../src/features/labels/products';
import { slotAttributes, validateSlotAssignment } from '../../src/sync/prices';
import { parseChange } from '../../src/sync/wire';
import { demoProduct, parseNetContent, parsePricesCsv, RandomPrices } from '../../simulators/central';
import { SeededRng } from '../../simulators/central/rng';

const ok = (o: Record<string, unknown>) => validateProduct({ change_id: 'p1', type: 'product', version: 3, ...o }, 'p1', 3);

describe('product change validation', () => {
  it('accepts GTIN-8/12/13/14 with their check digit and normalises them to 14 digits', () => {
    for (const [gtin, want] of [
      ['96385074', '00000096385074'],
      ['036000291452', '00036000291452'],
      ['4006381333931', '04006381333931'],
      ['04006381333931', '04006381333931'],
    ]) {
      const v = ok({ gtin, name: 'Whole milk' });
      expect(v).toEqual({ ok: true, change: { changeId: 'p1', gtin: want, name: 'Whole milk', netContent: null, version: 3 } });
    }
  });

  it('refuses a wrong check digit, a wrong length and a number instead of a string', () => {
    for (const gtin of ['4006381333932', '400638133393', '123', 4006381333931, null]) {
      const v = ok({ gtin, name: 'Whole milk' });
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.detail).toMatch(/^gtin .* is not a GTIN-8\/12\/13\/14 with a valid check digit$/);
    }
  });

  it('name: 1-200 characters (code points), not blank, no control characters', () => {
    expect(ok({ gtin: '4006381333931', name: 'x'.repeat(200) }).ok).toBe(true);
    expect(ok({ gtin: '4006381333931', name: '\u{1F95B}'.repeat(200) }).ok).toBe(true); // 200 emoji = 400 UTF-16 units
    expect(ok({ gtin: '4006381333931', name: 'x'.repeat(201) })).toMatchObject({ ok: false, detail: expect.stringMatching(/name must be 1-200/) });
    expect(ok({ gtin: '4006381333931', name: '' })).toMatchObject({ ok: false });
    expect(ok({ gtin: '4006381333931', name: '   ' })).toMatchObject({ ok: false });
    expect(ok({ gtin: '4006381333931', name: 'Milk\nBread' })).toMatchObject({ ok: false, detail: 'name must not contain control characters' });
    expect(ok({ gtin: '4006381333931' })).toMatchObject({ ok: false, detail: 'name must be a string' });
  });

  it('net_content: absent or null is none; amount > 0 in g, kg, ml, cl or l; anything else is refused', () => {
    expect(ok({ gtin: '4006381333931', name: 'Milk', net_content: null })).toMatchObject({ ok: true, change: { netContent: null } });
    expect(ok({ gtin: '4006381333931', name: 'Oil', net_content: { amount: 0.75, unit: 'l' } })).toMatchObject({ ok: true, change: { netContent: { amount: 0.75, unit: 'l' } } });
    expect(ok({ gtin: '4006381333931', name: 'Cola', net_content: { amount: 33, unit: 'cl', extra: 1 } })).toMatchObject({ ok: true, change: { netContent: { amount: 33, unit: 'cl' } } });
    for (const net_content of [{ amount: 0, unit: 'g' }, { amount: -1, unit: 'g' }, { amount: '500', unit: 'g' }, { amount: 500, unit: 'oz' }, { amount: 500 }, '500 g', [500, 'g']]) {
      expect(ok({ gtin: '4006381333931', name: 'Rice', net_content }).ok, JSON.stringify(net_content)).toBe(false);
    }
  });
});

describe('slot change attributes', () => {
  it('the fields the core does not interpret ride along; the contract fields never do', () => {
    const wire = {
      change_id: 'slot/st1/sh1/2/v4',
      type: 'slot',
      store_id: 'st1',
      shelf: 'sh1',
      slot: 2,
      gtin: '04006381333931',
      unit_weight_g: 251.5,
      labels: ['0000021EC9AB1234', 'A1B2C3D4E5F6'],
      planogram: { facing: 3 },
      version: 4,
      published_at: '2026-03-02T12:00:00Z',
      cursor: 'djE6MTI',
    };
    const change = parseChange(wire, 'changes');
    expect(change).toMatchObject({ type: 'slot_assignment', slot: '2', labels: ['0000021EC9AB1234', 'A1B2C3D4E5F6'] });
    const v = validateSlotAssignment(change as unknown as Record<string, unknown>, 'slot/st1/sh1/2/v4', 4);
    expect(v).toEqual({
      ok: true,
      change: { changeId: 'slot/st1/sh1/2/v4', shelf: 'sh1', slot: '2', gtin: '04006381333931', unitWeightG: 251.5, version: 4, attributes: { labels: ['0000021EC9AB1234', 'A1B2C3D4E5F6'], planogram: { facing: 3 } } },
    });
    expect(Object.isFrozen(v.ok && v.change.attributes)).toBe(true);
  });

  it('a slot change with nothing extra has no attributes at all', () => {
    const v = validateSlotAssignment({ change_id: 'c', type: 'slot_assignment', shelf: 'sh1', slot: '1', gtin: null, unit_weight_g: null, version: 1, store_id: 'st1', published_at: 'x' }, 'c', 1);
    expect(v.ok && 'attributes' in v.change).toBe(false);
    expect(slotAttributes({ change_id: 'c', labels: undefined })).toBeUndefined();
  });
});

describe('central simulator product sources', () => {
  it('net content text: amount and unit, comma or point decimals', () => {
    expect(parseNetContent('500 g')).toEqual({ amount: 500, unit: 'g' });
    expect(parseNetContent('0,75 l')).toEqual({ amount: 0.75, unit: 'l' });
    expect(parseNetContent('1.5KG')).toEqual({ amount: 1.5, unit: 'kg' });
    expect(parseNetContent('33 cl')).toEqual({ amount: 33, unit: 'cl' });
    for (const bad of ['', '0 g', '500', 'g', '500 oz', '20 bags', '-1 l']) expect(parseNetContent(bad), bad).toBeNull();
  });

  it('the price CSV may name products: name and net_content columns, the last row of a GTIN wins', () => {
    const csv = [
      'gtin,price,currency,name,net_content',
      '4006381333931,249,EUR,Whole milk 3.5 %,1 l',
      '96385074,99,EUR,,',
      '4006381333931,199,EUR,"Whole milk 3,5 %",1 l',
      '036000291452,349,EUR,Free-range eggs,',
    ].join('\n');
    const { prices, products, issues } = parsePricesCsv(csv);
    expect(issues).toEqual([]);
    expect(prices).toHaveLength(4);
    expect(products).toEqual([
      { gtin: '04006381333931', name: 'Whole milk 3,5 %', netContent: { amount: 1, unit: 'l' } },
      { gtin: '00036000291452', name: 'Free-range eggs', netContent: null },
    ]);
  });

  it('a bad net_content, or one without a name, is an issue of its line and nothing is returned', () => {
    const csv = ['gtin,price,currency,name,net_content', '4006381333931,249,EUR,Milk,1 gallon', '96385074,99,EUR,,500 g'].join('\n');
    const { prices, products, issues } = parsePricesCsv(csv);
    expect(issues.map((i) => i.line)).toEqual([2, 3]);
    expect(issues[0]!.message).toMatch(/net_content "1 gallon"/);
    expect(issues[1]!.message).toBe('net_content needs a name');
    expect([prices, products]).toEqual([[], []]);
  });

  it('every GTIN of the random price pool has a catalogue product, some with a net content', () => {
    const pool = new RandomPrices(new SeededRng(1));
    const products = pool.gtins.map((g) => pool.product(g)!);
    expect(products.every((p) => p.name.length > 0 && p.name.length <= 200)).toBe(true);
    expect(new Set(products.map((p) => p.name)).size).toBe(pool.gtins.length);
    expect(products.filter((p) => p.netContent).length).toBeGreaterThan(30);
    expect(products.filter((p) => !p.netContent).length).toBeGreaterThan(3);
    expect(pool.product('04006381333931')).toBeUndefined();
    expect(demoProduct(0)).toEqual({ name: 'Whole milk 3.5 %', netContent: { amount: 1, unit: 'l' } });
  });
});
