// Fan-out peer for the benchmark: socket.io broadcasting with io.emit().
//   node socketio-server.js PORT
// Clients connect over the websocket transport only; POST /publish parses
// the JSON body and emits it as event "msg" to everyone, answering 200.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 8091);
const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/publish') {
    res.writeHead(404).end(); // socket.io's own paths never reach here
    return;
  }
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    let data;
    try {
      data = JSON.parse(Buffer.concat(parts).toString());
    } catch (e) {
      res.writeHead(400).end();
      return;
    }
    io.emit('msg', data);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(`{"subscribers":${io.engine.clientsCount}}`);
  });
});
server.keepAliveTimeout = 600000;
const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  pingInterval: 600000,
  pingTimeout: 600000,
  serveClient: false,
});
server.listen(port, '127.0.0.1', () => console.error(`socket.io listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
