// A HEP v3 receiver for edge-sbc's end-to-end test, built on sipcapture's
// hep-js decoder. It listens on 127.0.0.1 (a free port), prints
// {"listening":PORT} and then one JSON line per packet it decodes:
// {"src","dst","correlation_id","start_line",...} or {"error"}.
//
//   node receiver.js udp|tcp
'use strict';
const dgram = require('dgram');
const net = require('net');
const hep = require('hep-js');

const transport = process.argv[2] || 'udp';

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function emit(buf) {
  const d = hep.decapsulate(buf);
  if (!d || !d.rcinfo) {
    print({ error: 'hep-js could not decode a packet of ' + buf.length + ' bytes' });
    return;
  }
  const r = d.rcinfo;
  const payload = typeof d.payload === 'string' ? d.payload : '';
  print({
    src: r.srcIp + ':' + r.srcPort,
    dst: r.dstIp + ':' + r.dstPort,
    correlation_id: r.correlation_id || '',
    start_line: payload.split('\r\n')[0],
    family: r.protocolFamily,
    protocol: r.protocol,
    payload_type: r.payloadType,
    capture_id: r.captureId,
    capture_pass: r.capturePass || '',
    time_sec: r.timeSeconds,
    time_usec: r.timeUseconds,
    payload_length: payload.length,
  });
}

if (transport === 'udp') {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg) => emit(msg));
  sock.bind(0, '127.0.0.1', () => print({ listening: sock.address().port }));
} else if (transport === 'tcp') {
  const srv = net.createServer((c) => {
    let pending = Buffer.alloc(0);
    c.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      // Over TCP packets follow one another, each framed by its length.
      while (pending.length >= 6) {
        if (pending.toString('latin1', 0, 4) !== 'HEP3') {
          print({ error: 'stream out of sync' });
          c.destroy();
          return;
        }
        const len = pending.readUInt16BE(4);
        if (pending.length < len) break;
        emit(pending.subarray(0, len));
        pending = pending.subarray(len);
      }
    });
    c.on('error', () => {});
  });
  srv.listen(0, '127.0.0.1', () => print({ listening: srv.address().port }));
} else {
  console.error('usage: node receiver.js udp|tcp');
  process.exit(2);
}
