// Fan-out peer for the benchmark: the `ws` package's documented broadcast.
//   node node-ws-server.js PORT
// GET upgrade on any path subscribes; POST /publish sends the body as one
// text message to every open client and answers 200 {"subscribers":N}.
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 8090);
const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/publish') {
    res.writeHead(404).end();
    return;
  }
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const msg = Buffer.concat(parts).toString();
    let n = 0;
    for (const c of wss.clients) {
      if (c.readyState === WebSocket.OPEN) {
        c.send(msg);
        n++;
      }
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(`{"subscribers":${n}}`);
  });
});
server.keepAliveTimeout = 600000;
server.maxConnections = 100000;
const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: true });
server.listen(port, '127.0.0.1', () => console.error(`node-ws listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
