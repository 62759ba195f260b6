import path from 'node:path';
import { targetNameProblem } from '../../util/names';

/**
 * snapuserd's control protocol (spec §3.1–3.2): ASCII requests, fields separated by commas, no
 * terminator, at most 512 bytes; replies are bare ASCII words. The commands and reply strings are
 * Android's (UserSnapshotServer::Receivemsg); vab also accepts one trailing newline, for people
 * typing at the socket.
 */

/** Android's kMaxPacketSize: the server reads at most this much per request. */
export const MAX_REQUEST_BYTES = 512;

export type MergeStatusString = 'snapshot' | 'snapshot-merge' | 'snapshot-merge-complete' | 'snapshot-merge-failed';

export type ControlCommand =
  | { kind: 'query' }
  | { kind: 'init'; misc: string; cow: string; backing: string; base: string }
  | { kind: 'start'; misc: string }
  | { kind: 'delete'; misc: string }
  | { kind: 'detach' }
  | { kind: 'stop' }
  | { kind: 'supports'; feature: string }
  | { kind: 'initiate_merge'; misc: string }
  | { kind: 'merge_percent' }
  | { kind: 'getstatus'; misc: string }
  | { kind: 'update-verify' }
  | { kind: 'pause_merge' }
  | { kind: 'resume_merge' };

/**
 * What a request turned out to be. `malformed` is a known command with the wrong parts (Android
 * answers it and keeps the client); `unknown` is anything else (Android answers `fail` and drops
 * the client).
 */
export type ParsedRequest =
  | { ok: true; command: ControlCommand }
  | { ok: false; kind: 'malformed'; command: string; reason: string; reply: string }
  | { ok: false; kind: 'unknown'; reason: string };

/** The feature `supports,` accepts (first-stage init asks before handing the socket over). */
export const SOCKET_HANDOFF_FEATURE = 'second_stage_socket_handoff';

const SINGLE_MISC = new Set(['start', 'delete', 'initiate_merge', 'getstatus']);
const NO_ARGUMENT = new Set(['query', 'detach', 'stop', 'merge_percent', 'update-verify', 'pause_merge', 'resume_merge']);

/** Text of one request: one trailing newline (and a CR before it) is dropped. */
export function requestText(bytes: Buffer): string {
  let text = bytes.toString('latin1');
  if (text.endsWith('\n')) text = text.slice(0, -1);
  if (text.endsWith('\r')) text = text.slice(0, -1);
  return text;
}

export function parseRequest(text: string): ParsedRequest {
  if (text.length > MAX_REQUEST_BYTES) return { ok: false, kind: 'unknown', reason: `request of ${text.length} bytes exceeds ${MAX_REQUEST_BYTES}` };
  // eslint-disable-next-line no-control-regex
  if (/[^\x20-\x7e]/.test(text)) return { ok: false, kind: 'unknown', reason: 'request holds bytes that are not printable ASCII' };
  const parts = text.split(',');
  const command = parts[0];
  const malformed = (reason: string, reply = 'fail'): ParsedRequest => ({ ok: false, kind: 'malformed', command, reason, reply });
  if (NO_ARGUMENT.has(command)) {
    // Android ignores extra fields here; so does vab.
    return { ok: true, command: { kind: command } as ControlCommand };
  }
  if (command === 'init') {
    if (parts.length !== 5) return malformed(`init needs 5 parts (init,misc,cow,backing,base), got ${parts.length}`);
    const [, misc, cow, backing, base] = parts;
    const problem = targetNameProblem(misc);
    if (problem) return malformed(`misc name ${JSON.stringify(misc)}: ${problem}`);
    for (const [role, file] of [['cow', cow], ['backing', backing], ['base', base]] as const) {
      if (!path.isAbsolute(file)) return malformed(`${role} path ${JSON.stringify(file)} is not absolute`);
    }
    return { ok: true, command: { kind: 'init', misc, cow, backing, base } };
  }
  if (SINGLE_MISC.has(command)) {
    // getstatus answers a malformed request with the failed status, as Android's does.
    const failReply = command === 'getstatus' ? 'snapshot-merge-failed' : 'fail';
    if (parts.length !== 2) return malformed(`${command} needs 2 parts (${command},misc), got ${parts.length}`, failReply);
    const problem = targetNameProblem(parts[1]);
    if (problem) return malformed(`misc name ${JSON.stringify(parts[1])}: ${problem}`, failReply);
    return { ok: true, command: { kind: command, misc: parts[1] } as ControlCommand };
  }
  if (command === 'supports') {
    if (parts.length !== 2) return malformed(`supports needs 2 parts, got ${parts.length}`);
    return { ok: true, command: { kind: 'supports', feature: parts[1] } };
  }
  return { ok: false, kind: 'unknown', reason: `unknown command ${JSON.stringify(command.slice(0, 64))}` };
}

/** The request bytes for a command, as Android's client sends them (the encode half of parseRequest). */
export function encodeRequest(command: ControlCommand): Buffer {
  let text: string;
  switch (command.kind) {
    case 'init':
      text = ['init', command.misc, command.cow, command.backing, command.base].join(',');
      break;
    case 'start':
    case 'delete':
    case 'initiate_merge':
    case 'getstatus':
      text = `${command.kind},${command.misc}`;
      break;
    case 'supports':
      text = `supports,${command.feature}`;
      break;
    default:
      text = command.kind;
  }
  return Buffer.from(text, 'latin1');
}

/** merge_percent's reply: C++ std::to_string(double), i.e. printf("%f"): six decimals. */
export function formatMergePercent(percent: number): string {
  return (Number.isFinite(percent) ? percent : 0).toFixed(6);
}

/** `success,<num_sectors>`, init's reply. */
export function initReply(sectors: number): string {
  return `success,${sectors}`;
}
