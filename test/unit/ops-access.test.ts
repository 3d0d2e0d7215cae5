import { describe, expect, it } from 'vitest';
import { opsRefusal } from '../../src/ops/routes';

describe('who may read /metrics, /healthz, /readyz', () => {
  const token = Buffer.from('s3cret-token-of-the-fleet');
  it('loopback always, with or without a token configured', () => {
    for (const a of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '127.0.0.5']) {
      expect(opsRefusal(null, a, undefined)).toBeNull();
      expect(opsRefusal(token, a, undefined)).toBeNull();
    }
  });
  it('another host: refused without a configured token, whatever it sends', () => {
    expect(opsRefusal(null, '10.1.2.3', 'Bearer anything')).toBe('only from loopback: set http.ops_token_file to allow other hosts with a token');
  });
  it('another host: only the exact bearer token', () => {
    expect(opsRefusal(token, '10.1.2.3', 'Bearer s3cret-token-of-the-fleet')).toBeNull();
    expect(opsRefusal(token, '::ffff:10.1.2.3', 'Bearer s3cret-token-of-the-fleet')).toBeNull();
    for (const h of [undefined, '', 'Bearer s3cret-token-of-the-flee', 'Bearer s3cret-token-of-the-fleetX', 'Basic czNjcmV0', 's3cret-token-of-the-fleet'])
      expect(opsRefusal(token, '10.1.2.3', h)).toBe('a bearer token (http.ops_token_file) is needed from another host');
  });
});
