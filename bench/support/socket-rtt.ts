import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * The floor under the daemon hop, measured on this machine in this run: a round trip between two
 * Node processes over a unix socket, a 56-byte message each way (a shared-transport request and its
 * answer header), nothing else. Every IO through the daemon pays this on top of the daemon's own
 * work: with the no-hop server's work per IO, `daemon_vs_nohop` is at most nohop / (nohop + round trip).
 */
const ECHO = `
const net = require('net');
const socket = net.connect(process.argv[1]);
socket.on('data', (chunk) => socket.write(chunk));
socket.on('error', () => process.exit(0));
socket.on('close', () => process.exit(0));
`;

const MESSAGE = Buffer.alloc(56);

/** Microseconds per round trip, the median of `rounds` runs of `trips` each. */
export async function measureSocketRoundTrip(dir: string, trips = 4000, rounds = 5): Promise<number> {
  const file = path.join(dir, 'rtt.sock');
  await fsp.rm(file, { force: true });
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(file, resolve));
  const child = spawn(process.execPath, ['-e', ECHO, file], { stdio: 'ignore' });
  try {
    const socket = await accepted;
    const perRound: number[] = [];
    for (let round = 0; round < rounds; round++) perRound.push(await pingPong(socket, trips));
    socket.destroy();
    perRound.sort((a, b) => a - b);
    return perRound[Math.floor(rounds / 2)];
  } finally {
    child.kill('SIGKILL');
    server.close();
    await fsp.rm(file, { force: true });
  }
}

function pingPong(socket: net.Socket, trips: number): Promise<number> {
  return new Promise((resolve) => {
    let received = 0;
    let done = 0;
    const started = performance.now();
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      // Echoes may be cut or merged: count whole messages back.
      while (received >= MESSAGE.length) {
        received -= MESSAGE.length;
        if (++done === trips) {
          socket.off('data', onData);
          resolve(((performance.now() - started) * 1000) / trips);
          return;
        }
        socket.write(MESSAGE);
      }
    };
    socket.on('data', onData);
    socket.write(MESSAGE);
  });
}
