import { describe, expect, it } from 'vitest';
import { decodeEpc, epcGtin, escapeEpcUriComponent, type DecodedEpc } from '../../src/drivers/epc';

// Every hex string and expected value below is written by hand or taken from published examples
// (GS1 EPC Tag Data Standard worked examples, other implementations' test data); none comes from
// an encoder of ours.

function sgtin(e: DecodedEpc) {
  if (e.scheme === 'raw') throw new Error(`expected an SGTIN, got raw: ${e.reason} (${e.detail})`);
  return e;
}

describe('SGTIN-96: published vectors', () => {
  it('the TDS worked example 3074257BF7194E4000001A85', () => {
    // 0x30 | filter 011 | partition 101 (7-digit company, 6-digit item) | 0614141 | 812345 | 6789
    expect(decodeEpc('3074257BF7194E4000001A85')).toEqual({
      scheme: 'sgtin-96',
      gtin: '80614141123458',
      serial: '6789',
      filter: 3,
      partition: 5,
      companyPrefix: '0614141',
      itemReference: '812345',
      uri: 'urn:epc:id:sgtin:0614141.812345.6789',
      tagUri: 'urn:epc:tag:sgtin-96:3.0614141.812345.6789',
      hex: '3074257BF7194E4000001A85',
    });
  });

  it('the EPC of a real M100 tag notification: 30751FEB705C5904E3D50D70', () => {
    const e = sgtin(decodeEpc(Buffer.from([0x30, 0x75, 0x1f, 0xeb, 0x70, 0x5c, 0x59, 0x04, 0xe3, 0xd5, 0x0d, 0x70])));
    expect(e.scheme).toBe('sgtin-96');
    expect(e.gtin).toBe('04717276945640');
    expect(e.companyPrefix).toBe('4717276');
    expect(e.itemReference).toBe('094564');
    expect(e.serial).toBe('21002259824');
    expect(e.filter).toBe(3);
    expect(e.uri).toBe('urn:epc:id:sgtin:4717276.094564.21002259824');
  });

  it('TDS 2.x example (partition 1, 11-digit company prefix): 3066C4409047E140075BCD15', () => {
    const e = sgtin(decodeEpc('3066C4409047E140075BCD15'));
    expect(e.partition).toBe(1);
    expect(e.gtin).toBe('09506000134352');
    expect(e.uri).toBe('urn:epc:id:sgtin:95060001343.05.123456789');
    expect(e.tagUri).toBe('urn:epc:tag:sgtin-96:3.95060001343.05.123456789');
  });

  it('partition 6 with leading zeros (python-epc test data): 301800004000004000000001', () => {
    const e = sgtin(decodeEpc('301800004000004000000001'));
    expect(e).toMatchObject({ filter: 0, partition: 6, companyPrefix: '000001', itemReference: '0000001', serial: '1', gtin: '00000010000014' });
    expect(e.uri).toBe('urn:epc:id:sgtin:000001.0000001.1');
  });

  it('filter 1 (point-of-sale item), lower case and spaces accepted: 30 34 00 7d ...', () => {
    const e = sgtin(decodeEpc('30 34 00 7d 00 01 1c 40 00 00 00 0b'));
    expect(e).toMatchObject({ filter: 1, partition: 5, companyPrefix: '0008000', itemReference: '001137', serial: '11' });
    expect(e.gtin).toBe('00008000011378'); // 7·3+3+1·3+1+8·3 = 52, check 8
    expect(e.hex).toBe('3034007D00011C400000000B');
  });
});

describe('SGTIN-96: every partition at its boundaries', () => {
  // [partition, hex with the largest company prefix and item reference the digits allow and serial 2^38-1,
  //  company prefix, item reference, GTIN-14]
  const max: Array<[number, string, string, string]> = [
    [0, '3023A352943FFE7FFFFFFFFF', '999999999999', '9'],
    [1, '3026E90EDCFFF8FFFFFFFFFF', '99999999999', '99'],
    [2, '302A540BE3FFF9FFFFFFFFFF', '9999999999', '999'],
    [3, '302FB9AC9FF9C3FFFFFFFFFF', '999999999', '9999'],
    [4, '3032FAF07FE1A7FFFFFFFFFF', '99999999', '99999'],
    [5, '30366259FFD08FFFFFFFFFFF', '9999999', '999999'],
    [6, '303BD08FE6259FFFFFFFFFFF', '999999', '9999999'],
  ];
  it.each(max)('partition %i: largest values decode', (partition, hex, company, item) => {
    const e = sgtin(decodeEpc(hex));
    expect(e).toMatchObject({ scheme: 'sgtin-96', filter: 1, partition, companyPrefix: company, itemReference: item, serial: '274877906943' });
    expect(e.gtin).toBe('99999999999997');
    expect(e.uri).toBe(`urn:epc:id:sgtin:${company}.${item}.274877906943`);
  });

  // small values, so both fields need zero padding and the indicator is 0: company prefix 123, item reference 0555...
  const small: Array<[number, string, string, string, string]> = [
    [0, '300000000001EC0000000000', '000000000123', '0', '00000000001236'],
    [1, '30040000000F614000000000', '00000000123', '05', '00000000012355'],
    [2, '30080000007B0DC000000000', '0000000123', '055', '00000000123556'],
    [3, '300C000007B08AC000000000', '000000123', '0555', '00000001235555'],
    [4, '301000003D856CC000000000', '00000123', '05555', '00000012355556'],
    [5, '30140001EC3640C000000000', '0000123', '055555', '00000123555555'],
    [6, '3018001EC21E88C000000000', '000123', '0555555', '00001235555556'],
  ];
  it.each(small)('partition %i: zero-padded fields', (partition, hex, company, item, gtin) => {
    const e = sgtin(decodeEpc(hex));
    expect(e).toMatchObject({ filter: 0, partition, companyPrefix: company, itemReference: item, serial: '0', gtin });
    expect(e.uri).toBe(`urn:epc:id:sgtin:${company}.${item}.0`);
    expect(e.tagUri).toBe(`urn:epc:tag:sgtin-96:0.${company}.${item}.0`);
  });

  // one more than the digits allow: company prefix 10^digits, or item reference 10^digits
  const companyOverflow: Array<[number, string]> = [
    [0, '3023A3529440000000000001'],
    [1, '3026E90EDD00000000000001'],
    [2, '302A540BE400000000000001'],
    [3, '302FB9ACA000000000000001'],
    [4, '3032FAF08000000000000001'],
    [5, '3036625A0000000000000001'],
    [6, '303BD0900000000000000001'],
  ];
  it.each(companyOverflow)('partition %i: a company prefix one digit too long stays raw', (_p, hex) => {
    expect(decodeEpc(hex)).toMatchObject({ scheme: 'raw', hex, reason: 'company-prefix-overflow' });
  });

  const itemOverflow: Array<[number, string]> = [
    [0, '302000000000028000000001'],
    [1, '302400000000190000000001'],
    [2, '302800000000FA0000000001'],
    [3, '302C00000009C40000000001'],
    [4, '303000000061A80000000001'],
    [5, '3034000003D0900000000001'],
    [6, '303800002625A00000000001'],
  ];
  it.each(itemOverflow)('partition %i: an item reference one digit too long stays raw', (_p, hex) => {
    expect(decodeEpc(hex)).toMatchObject({ scheme: 'raw', hex, reason: 'item-reference-overflow' });
  });

  it('partition 7 is reserved: raw, no GTIN', () => {
    const e = decodeEpc('303C00000000000000000001');
    expect(e).toMatchObject({ scheme: 'raw', reason: 'partition' });
    expect(epcGtin(e)).toBeNull();
  });
});

describe('SGTIN-198', () => {
  it('TDS 2.x example: serial 32a/b, the slash escaped in the URIs', () => {
    expect(decodeEpc('3666C4409047E159B2C2BF100000000000000000000000000000')).toEqual({
      scheme: 'sgtin-198',
      gtin: '09506000134352',
      serial: '32a/b',
      filter: 3,
      partition: 1,
      companyPrefix: '95060001343',
      itemReference: '05',
      uri: 'urn:epc:id:sgtin:95060001343.05.32a%2Fb',
      tagUri: 'urn:epc:tag:sgtin-198:3.95060001343.05.32a%2Fb',
      hex: '3666C4409047E159B2C2BF100000000000000000000000000000',
    });
  });

  it('epcpy test data: serial "Serial", partition 4', () => {
    const e = sgtin(decodeEpc('36300001DB011169E5E5A70EC000000000000000000000000000'));
    expect(e).toMatchObject({ scheme: 'sgtin-198', filter: 1, partition: 4, companyPrefix: '00000950', itemReference: '01093', serial: 'Serial' });
    expect(e.gtin).toBe('00000095010939');
    expect(e.tagUri).toBe('urn:epc:tag:sgtin-198:1.00000950.01093.Serial');
  });

  it('escapes every character the TDS requires (" % & / < > ?) and leaves the others', () => {
    // 0614141.812345, serial A"%&/<>?z: 7-bit codes 41 22 25 26 2F 3C 3E 3F 7A
    const e = sgtin(decodeEpc('3634257BF7194E60A24A997BC7CFFD0000000000000000000000'));
    expect(e.serial).toBe('A"%&/<>?z');
    expect(e.gtin).toBe('80614141123458');
    expect(e.uri).toBe('urn:epc:id:sgtin:0614141.812345.A%22%25%26%2F%3C%3E%3Fz');
    expect(escapeEpcUriComponent("!'()*+,-.:;=_09AZaz")).toBe("!'()*+,-.:;=_09AZaz");
  });

  it('a full 20-character serial, partition 6', () => {
    const e = sgtin(decodeEpc('3678789004B5A1D0A750A552B58B573A76F6FB07306D61F49400'));
    expect(e.serial).toBe("!'()*+,-.:;=_09AZaz%");
    expect(e).toMatchObject({ filter: 3, partition: 6, companyPrefix: '123456', itemReference: '1234567', gtin: '11234562345675' });
    expect(e.uri).toBe("urn:epc:id:sgtin:123456.1234567.!'()*+,-.:;=_09AZaz%25");
  });

  it('198 bits padded to whole bytes (25) are accepted too', () => {
    const e = sgtin(decodeEpc('3634257BF7194E60B100000000000000000000000000000000'));
    expect(e.serial).toBe('A1');
    expect(e.uri).toBe('urn:epc:id:sgtin:0614141.812345.A1');
  });

  it.each([
    ['a character outside the set (#)', '3634257BF7194E60A30000000000000000000000000000000000', 'serial-invalid'],
    ['a character after the terminating zero', '3634257BF7194E60808400000000000000000000000000000000', 'serial-invalid'],
    ['an empty serial', '3634257BF7194E40000000000000000000000000000000000000', 'serial-empty'],
    ['a non-zero pad bit', '3634257BF7194E60800000000000000000000000000000000001', 'padding'],
    ['partition 7', '363C000000000000000000000000000000000000000000000000', 'partition'],
    ['a 96-bit length', '3634257BF7194E6080000000', 'length'],
  ])('%s stays raw', (_name, hex, reason) => {
    const e = decodeEpc(hex);
    expect(e).toMatchObject({ scheme: 'raw', hex, reason });
    expect(epcGtin(e)).toBeNull();
  });
});

describe('everything else stays raw hex with a reason, never a GTIN', () => {
  it.each([
    ['a TID-style EPC from a real tag', 'E2806894000050245895B5EB', 'unsupported-header', 'header 0xE2'],
    ['SSCC-96 (TDS example)', '311BA1B300CE0A6A83000000', 'unsupported-header', 'SSCC-96'],
    ['SGLN-96 (TDS example)', '3276451FD46072000000162E', 'unsupported-header', 'SGLN-96'],
    ['GIAI-96 (TDS example)', '3476451FD40000000000162E', 'unsupported-header', 'GIAI-96'],
    ['SGTIN+ (TDS 2.x)', 'F73095212341234538566CB0AFC4', 'unsupported-header', 'SGTIN+'],
    ['an unprogrammed tag', '000000000000000000000000', 'unsupported-header', '0x00'],
    ['SGTIN-96 header, 88 bits', '3074257BF7194E4000001A', 'length', '88 bits'],
    ['SGTIN-96 header, 128 bits', '3074257BF7194E4000001A8500000000', 'length', '128 bits'],
  ])('%s', (_name, hex, reason, detail) => {
    const e = decodeEpc(hex);
    expect(e).toMatchObject({ scheme: 'raw', hex, reason });
    expect(e.scheme === 'raw' && e.detail).toContain(detail);
    expect(epcGtin(e)).toBeNull();
  });

  it('empty input and strings that are not hex', () => {
    expect(decodeEpc('')).toMatchObject({ scheme: 'raw', hex: '', reason: 'empty' });
    expect(decodeEpc(new Uint8Array(0))).toMatchObject({ scheme: 'raw', reason: 'empty' });
    expect(decodeEpc('3074257BF7194E4000001A8')).toMatchObject({ scheme: 'raw', hex: '', reason: 'not-hex' });
    expect(decodeEpc('3074257BF7194E4000001A8G')).toMatchObject({ scheme: 'raw', hex: '', reason: 'not-hex' });
  });

  it('never throws on random bytes, and anything it calls an SGTIN has a valid GTIN-14', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 16) & 0xff;
    for (let n = 0; n < 5000; n++) {
      const len = [12, 12, 26, 25, 8, 16][n % 6]!;
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) b[i] = rnd();
      if (n % 2 === 0) b[0] = n % 4 === 0 ? 0x30 : 0x36;
      const e = decodeEpc(b);
      if (e.scheme !== 'raw') {
        expect(e.gtin).toMatch(/^\d{14}$/);
        expect(e.companyPrefix.length + e.itemReference.length).toBe(13);
      }
    }
  });
});
