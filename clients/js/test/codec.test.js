// Unit tests of the pure codec against the conformance vectors of gotalk-v1.md. No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeMessage,
  encodeHeader,
  encodeFramed,
  encodeVersion,
  parseHeader,
  headerLength,
  StreamDecoder,
  FrameDecoder,
  requestId,
  streamRequestId,
  decodeJSON,
  encodeJSON,
  payloadSize,
  ChinwagError,
  DEFAULTS,
} from '../chinwag.js';

const te = new TextEncoder();
const td = new TextDecoder();
const b = (s) => te.encode(s);
const str = (u8) => td.decode(u8);

// [wire bytes, message, payload]
const VECTORS = [
  ['ridid004echo00000000', { type: 'r', id: 'idid', name: 'echo', size: 0 }, ''],
  ['ridid004echo00000003abc', { type: 'r', id: 'idid', name: 'echo', size: 3 }, 'abc'],
  ['sidid004echo00000003abc', { type: 's', id: 'idid', name: 'echo', size: 3 }, 'abc'],
  ['pidid00000003def', { type: 'p', id: 'idid', size: 3 }, 'def'],
  ['pidid00000000', { type: 'p', id: 'idid', size: 0 }, ''],
  ['Ridid00000003abc', { type: 'R', id: 'idid', size: 3 }, 'abc'],
  ['Sidid00000003abc', { type: 'S', id: 'idid', size: 3 }, 'abc'],
  ['Eidid00000003abc', { type: 'E', id: 'idid', size: 3 }, 'abc'],
  ['eidid0000000600000003abc', { type: 'e', id: 'idid', wait: 6, size: 3 }, 'abc'],
  ['n005hello00000003abc', { type: 'n', name: 'hello', size: 3 }, 'abc'],
  ['n001a00000000', { type: 'n', name: 'a', size: 0 }, ''],
  ['h00025f63ee48', { type: 'h', load: 2, time: 0x5f63ee48, size: 0 }, ''],
  ['f00000002', { type: 'f', code: 2, size: 0 }, ''],
  ['r0001004echo00000019{"message":"Hello World"}', { type: 'r', id: '0001', name: 'echo', size: 25 }, '{"message":"Hello World"}'],
  ['R000100000019{"message":"Hello World"}', { type: 'R', id: '0001', size: 25 }, '{"message":"Hello World"}'],
  ['e00010000138800000014"request rate limit"', { type: 'e', id: '0001', wait: 5000, size: 20 }, '"request rate limit"'],
  ['s0001004echo0000000b{"message":', { type: 's', id: '0001', name: 'echo', size: 11 }, '{"message":'],
  ['p00010000000e"Hello World"}', { type: 'p', id: '0001', size: 14 }, '"Hello World"}'],
  ['p000100000000', { type: 'p', id: '0001', size: 0 }, ''],
  ['S00010000000b{"message":', { type: 'S', id: '0001', size: 11 }, '{"message":'],
  ['S00010000000e"Hello World"}', { type: 'S', id: '0001', size: 14 }, '"Hello World"}'],
  ['S000100000000', { type: 'S', id: '0001', size: 0 }, ''],
  [
    'n00cchat message0000002e{"message":"Hi","from":"nthn","room":"gonuts"}',
    { type: 'n', name: 'chat message', size: 46 },
    '{"message":"Hi","from":"nthn","room":"gonuts"}',
  ],
];

test('encodeMessage writes every conformance vector byte for byte', () => {
  for (const [wire, msg, payload] of VECTORS) {
    assert.equal(str(encodeMessage(msg, payload)), wire, `encoding ${JSON.stringify(msg)}`);
  }
});

test('parseHeader reads every conformance vector', () => {
  for (const [wire, msg, payload] of VECTORS) {
    const r = parseHeader(b(wire));
    assert.ok(r, wire);
    assert.deepEqual(r.msg, msg, wire);
    assert.equal(r.length, wire.length - te.encode(payload).length, `header length of ${wire}`);
    const nameLen = msg.name === undefined ? 0 : te.encode(msg.name).length;
    assert.equal(r.length, headerLength(msg.type, nameLen));
  }
});

test('StreamDecoder decodes the vectors as one byte stream, fed one byte at a time', () => {
  const all = '01' + VECTORS.map((v) => v[0]).join('');
  const dec = new StreamDecoder();
  const out = [];
  for (const byte of b(all)) out.push(...dec.push(Uint8Array.of(byte)));
  assert.equal(out.length, VECTORS.length + 1);
  assert.deepEqual(out[0], { type: 'version', version: 1 });
  VECTORS.forEach(([wire, msg, payload], i) => {
    const { payload: got, ...rest } = out[i + 1];
    assert.deepEqual(rest, msg, wire);
    assert.equal(str(got), payload, wire);
  });
  assert.equal(dec.buffered, 0);
});

test('StreamDecoder: a 9-byte f and a 12-byte n with an empty name are returned at once', () => {
  const dec = new StreamDecoder({}, { expectVersion: false });
  assert.deepEqual(dec.push(b('f00000002')).map((m) => m.type), ['f']);
  const [n] = dec.push(b('n00000000000'));
  assert.equal(n.type, 'n');
  assert.equal(n.name, '');
  assert.equal(n.payload.length, 0);
});

test('version: 01 accepted, 09 refused with code 1, garbage refused with code 2', () => {
  assert.equal(str(encodeVersion()), '01');
  assert.deepEqual(new FrameDecoder().push(b('01')), { type: 'version', version: 1 });
  assert.deepEqual(new FrameDecoder().push('01'), { type: 'version', version: 1 });
  assert.throws(() => new FrameDecoder().push(b('09')), (e) => e instanceof ChinwagError && e.protocolCode === 1);
  assert.throws(() => new StreamDecoder().push(b('09')), (e) => e.protocolCode === 1);
  assert.throws(() => new FrameDecoder().push(b('0x')), (e) => e.protocolCode === 2);
  assert.throws(() => new FrameDecoder().push(b('01r')), (e) => e.protocolCode === 2);
});

test('invalid headers are protocol errors with code 2', () => {
  const bad = [
    'hXXXX5f63ee48', // non-hex load (the vector)
    'x0000', // unknown type
    'Ridid0000000g', // bad hex in size
    'ridid00zecho00000000', // bad hex in name length
    'eidid0000000z00000000', // bad hex in wait
    'f0000000-',
  ];
  for (const wire of bad) {
    assert.throws(
      () => parseHeader(b(wire)),
      (e) => e instanceof ChinwagError && e.code === 'protocol' && e.protocolCode === 2,
      wire,
    );
  }
});

test('hex is accepted in upper case, written in lower case', () => {
  const r = parseHeader(b('eABCD0000ABCD0000000A'));
  assert.equal(r.msg.wait, 0xabcd);
  assert.equal(r.msg.size, 10);
  assert.equal(str(encodeHeader({ type: 'e', id: 'ABCD', wait: 0xabcd, size: 10 })), 'eABCD0000abcd0000000a');
});

test('limits: payload and name sizes are checked from the header alone', () => {
  const limits = { ...DEFAULTS, maxPayload: 16, maxNameLength: 4 };
  assert.ok(parseHeader(b('Ridid00000010'), 0, limits)); // exactly the limit
  assert.throws(() => parseHeader(b('Ridid00000011'), 0, limits), /exceeds the limit/);
  assert.throws(() => parseHeader(b('r0001004echoffffffff')), /exceeds the limit of 16777216/);
  assert.ok(parseHeader(b('r0001004echo00000000'), 0, limits));
  assert.throws(() => parseHeader(b('r0001005echoo00000000'), 0, limits), /name of 5 bytes/);
  // The name-length check fires before the name has arrived.
  assert.throws(() => parseHeader(b('n999'), 0, limits), /name of 2457 bytes/);
  assert.throws(() => new StreamDecoder({}, { expectVersion: false }).push(b('r0001004echoffffffff')), /exceeds/);
});

test('truncated headers need more bytes (stream) but are errors as a WebSocket message', () => {
  assert.equal(parseHeader(b('Ridid0000')), null);
  assert.equal(parseHeader(b('r0001004ech')), null);
  const dec = new FrameDecoder({}, { expectVersion: false });
  assert.throws(() => dec.push(b('Ridid0000')), (e) => e.protocolCode === 2 && /truncated/.test(e.message));
});

test('names are UTF-8; non-UTF-8 names are refused', () => {
  const wire = encodeMessage({ type: 'n', name: 'héllo' }, 'x');
  assert.equal(str(wire), 'n006héllo00000001x');
  assert.equal(parseHeader(wire).msg.name, 'héllo');
  const bad = Uint8Array.from([...b('n002'), 0xff, 0xfe, ...b('00000000')]);
  assert.throws(() => parseHeader(bad), /not valid UTF-8/);
});

test('encodeFramed: header and non-empty payload are separate frames; strings stay text', () => {
  const [h, p] = encodeFramed({ type: 'r', id: '0001', name: 'echo' }, '{"message":"Hello World"}');
  assert.equal(str(h), 'r0001004echo00000019');
  assert.equal(typeof p, 'string');
  const frames = encodeFramed({ type: 'R', id: '0001' }, Uint8Array.of(1, 2, 3));
  assert.equal(str(frames[0]), 'R000100000003');
  assert.deepEqual([...frames[1]], [1, 2, 3]);
  assert.equal(encodeFramed({ type: 'p', id: '0001' }, '').length, 1);
  assert.equal(encodeFramed({ type: 'h', load: 2, time: 0x5f63ee48 }).length, 1);
  assert.equal(str(encodeFramed({ type: 'h', load: 2, time: 0x5f63ee48 })[0]), 'h00025f63ee48');
  // The size counts UTF-8 bytes, not UTF-16 units.
  assert.equal(str(encodeFramed({ type: 'R', id: '0001' }, 'é€😀')[0]), 'R000100000009');
  assert.equal(payloadSize('é€😀'), 9);
  assert.equal(payloadSize('\ud800'), te.encode('\ud800').length);
});

test('FrameDecoder: header then payload frame (text or binary), heartbeats have no payload', () => {
  const dec = new FrameDecoder();
  assert.equal(dec.push(b('01')).type, 'version');
  assert.equal(dec.push(b('R000100000019')), null);
  const m = dec.push('{"message":"Hello World"}');
  assert.equal(m.type, 'R');
  assert.equal(m.id, '0001');
  assert.deepEqual(decodeJSON(m.payload), { message: 'Hello World' });
  assert.equal(dec.push(b('S000100000003')), null);
  assert.equal(str(dec.push(b('abc')).payload), 'abc');
  const h = dec.push(b('h00025f63ee48'));
  assert.deepEqual([h.type, h.load, h.time], ['h', 2, 0x5f63ee48]);
  const e = dec.push('p000100000000'); // a header as a text frame
  assert.equal(e.type, 'p');
  assert.equal(e.payload.length, 0);
  // Tolerance: a header frame that carries exactly its payload.
  assert.equal(str(dec.push(b('Eidid00000003abc')).payload), 'abc');
});

test('FrameDecoder: payload size mismatch, trailing bytes and empty frames are invalid', () => {
  const dec = () => new FrameDecoder({}, { expectVersion: false });
  let d = dec();
  d.push(b('R000100000003'));
  assert.throws(() => d.push(b('ab')), /payload message of 2 bytes/);
  assert.throws(() => dec().push(b('Eidid00000003abcd')), /bytes after its 13-byte header/);
  assert.throws(() => dec().push(b('')), /empty WebSocket message/);
  d = dec();
  d.push(b('R000100000004'));
  assert.throws(() => d.push('é€'), /payload message of 5 bytes/); // 5 UTF-8 bytes
});

test('request ids: gotalk.js style base-36, stream ids start with !', () => {
  assert.equal(requestId(0), '0000');
  assert.equal(requestId(1), '0001');
  assert.equal(requestId(35), '000z');
  assert.equal(requestId(36), '0010');
  assert.equal(requestId(36 ** 4 - 1), 'zzzz');
  assert.equal(requestId(36 ** 4), '0000');
  assert.equal(streamRequestId(0), '!000');
  assert.equal(streamRequestId(36 ** 3 - 1), '!zzz');
  assert.equal(streamRequestId(36 ** 3), '!000');
});

test('raw (Go-style) request ids round-trip byte for byte', () => {
  const id = '\x01\x00\x00\x00';
  const wire = encodeMessage({ type: 'R', id }, 'x');
  assert.deepEqual([...wire.subarray(0, 5)], [0x52, 1, 0, 0, 0]);
  assert.equal(parseHeader(wire).msg.id, id);
  const hi = Uint8Array.of(0x52, 0xff, 0x80, 0x00, 0x7f, ...b('00000000'));
  const m = parseHeader(hi).msg;
  assert.deepEqual([...encodeHeader(m)], [...hi]);
});

test('JSON payloads', () => {
  assert.equal(encodeJSON(undefined), '');
  assert.equal(encodeJSON({ a: 1 }), '{"a":1}');
  assert.equal(decodeJSON(new Uint8Array(0)), undefined);
  assert.deepEqual(decodeJSON(b('[1,"x"]')), [1, 'x']);
  assert.throws(() => decodeJSON(b('{nope')), (e) => e.code === 'bad_json');
});

test('encoder refuses values that do not fit', () => {
  assert.throws(() => encodeHeader({ type: 'n', name: 'x'.repeat(4096), size: 0 }), /4095/);
  assert.throws(() => encodeHeader({ type: 'R', id: 'abc', size: 0 }), /4 bytes/);
  assert.throws(() => encodeHeader({ type: 'h', load: 0x10000, time: 0 }), /load/);
});
