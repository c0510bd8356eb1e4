import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader, MAX_FRAME, parseRequest, ProtocolError } from '../../src/api/protocol.js';

describe('frames', () => {
  it('round-trips values split at every byte boundary', () => {
    const bytes = Buffer.concat([encodeFrame({ id: 1, method: 'up', params: { name: 'default' } }), encodeFrame({ id: 2, method: 'list' })]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new FrameReader();
      const got = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))];
      expect(got).toEqual([{ id: 1, method: 'up', params: { name: 'default' } }, { id: 2, method: 'list' }]);
      expect(r.pending).toBe(0);
    }
  });

  it('refuses a zero or huge length before buffering the body', () => {
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(MAX_FRAME + 1);
    expect(() => new FrameReader().push(huge)).toThrow(/outside 1\.\.65536/);
    expect(() => new FrameReader().push(Buffer.alloc(4))).toThrow(ProtocolError);
  });

  it('refuses invalid UTF-8 and invalid JSON', () => {
    const frame = (body: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);
    expect(() => new FrameReader().push(frame(Buffer.from([0x7b, 0xff, 0x7d])))).toThrow(/UTF-8/);
    expect(() => new FrameReader().push(frame(Buffer.from('{nope')))).toThrow(/JSON/);
  });

  it('never throws anything but ProtocolError on arbitrary bytes, and holds at most one frame', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (chunks) => {
        const r = new FrameReader();
        try {
          for (const c of chunks) r.push(Buffer.from(c));
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
        expect(r.pending).toBeLessThanOrEqual(4 + MAX_FRAME);
      }),
    );
  });
});

describe('parseRequest', () => {
  it('accepts a well-formed request and defaults params', () => {
    expect(parseRequest({ id: 3, method: 'list' })).toEqual({ id: 3, method: 'list', params: {} });
  });
  it.each([
    [[], 'JSON object'],
    [null, 'JSON object'],
    [{ method: 'x' }, '`id`'],
    [{ id: 1.5, method: 'x' }, '`id`'],
    [{ id: 1 }, '`method`'],
    [{ id: 1, method: '' }, '`method`'],
    [{ id: 1, method: 'x', params: [1] }, '`params`'],
  ])('refuses %j', (v, fragment) => {
    expect(() => parseRequest(v)).toThrow(fragment);
  });
});
