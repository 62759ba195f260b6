import { isVabError } from '../util/errors';
import { CowFormatError } from './errors';
import { openFile } from './file';
import { COW_HEADER_V3_SIZE, CowHeader, compressionName, CowOpType, opTypeName } from './format';
import { decodeHeader } from './header';
import { CowReader } from './reader';

export interface InspectOptions {
  /** List every op (in COW order). */
  ops?: boolean;
  /** Decompress every payload, as inspect_cow --decompress does. */
  decompress?: boolean;
}

export interface InspectedOp {
  index: number;
  type: string;
  newBlock: number;
  blocks: number;
  source: number;
  dataLength: number;
  dataOffset: number;
  raw: boolean;
}

export interface CowInspection {
  file: string;
  fileSize: number;
  /** Absent when not even the header could be read. */
  header?: CowHeader;
  version?: string;
  compression?: string;
  opCounts?: { copy: number; replace: number; zero: number; xor: number; total: number };
  /** Blocks of the new image the ops produce. */
  blocks?: number;
  /** Payload bytes in the data area. */
  dataBytes?: number;
  sequenceLength?: number;
  resumePoints?: Array<{ label: string; opIndex: number }>;
  footer?: { opsSize: number; numOps: number };
  mergeOrder?: { total: number; ordered: number; merged: number; first: number[]; consistent: boolean; problem?: string };
  /** Memory the reader holds per op (op table and block index). */
  bytesPerOp?: number;
  parseMs?: number;
  valid: boolean;
  error?: { code: string; message: string; offset?: number; op?: number };
  ops?: InspectedOp[];
}

/**
 * Describes a COW the way Android's inspect_cow does: header, op counts, merge order and whether
 * it is valid. It never throws for a malformed file: the problem is reported in `error`.
 */
export async function inspectCow(path: string, options: InspectOptions = {}): Promise<CowInspection> {
  const file = await openFile(path, 'r');
  const report: CowInspection = { file: path, fileSize: await file.size(), valid: false };
  try {
    const head = Buffer.alloc(Math.min(COW_HEADER_V3_SIZE, report.fileSize));
    await file.read(head, 0, head.length, 0);
    report.header = decodeHeader(head, { file: path });
    report.version = `${report.header.majorVersion}.${report.header.minorVersion}`;
    const started = process.hrtime.bigint();
    const cow = await CowReader.fromFile(file);
    report.parseMs = Number(process.hrtime.bigint() - started) / 1e6;
    describe(cow, report, options);
    if (options.decompress) await decompressAll(cow);
    report.valid = report.mergeOrder?.consistent ?? true;
  } catch (err) {
    if (!isVabError(err)) throw err;
    report.error = { code: err.code, message: err.message, offset: err.offset, op: err instanceof CowFormatError ? err.op : undefined };
  } finally {
    await file.close();
  }
  return report;
}

function describe(cow: CowReader, report: CowInspection, options: InspectOptions): void {
  const { ops, parsed } = cow;
  report.header = cow.header;
  report.compression = compressionName(cow.header.compressionAlgorithm);
  const counts = { copy: 0, replace: 0, zero: 0, xor: 0, total: ops.count };
  let blocks = 0;
  let dataBytes = 0;
  for (let op = 0; op < ops.count; op++) {
    const type = ops.type(op);
    if (type === CowOpType.Copy) counts.copy++;
    else if (type === CowOpType.Replace) counts.replace++;
    else if (type === CowOpType.Zero) counts.zero++;
    else if (type === CowOpType.Xor) counts.xor++;
    blocks += ops.span(op);
    dataBytes += ops.dataLength[op];
  }
  Object.assign(report, { opCounts: counts, blocks, dataBytes, sequenceLength: parsed.sequence.length, footer: parsed.footer, bytesPerOp: cow.bytesPerOp() });
  report.resumePoints = parsed.resumePoints.map((p) => ({ label: p.label.toString(), opIndex: p.opIndex }));
  const order = cow.mergeOrder();
  const problem = cow.verifyMergeOrder(order);
  report.mergeOrder = {
    total: order.ops.length,
    ordered: order.orderedCount,
    merged: cow.header.numMergeOps,
    first: Array.from(order.ops.subarray(0, 8), (op) => ops.newBlock[op]),
    consistent: problem === undefined,
    problem: problem && `position ${problem.position}: ${problem.message}`,
  };
  if (options.ops) {
    report.ops = [];
    for (let op = 0; op < ops.count; op++) {
      report.ops.push({ index: op, type: opTypeName(ops.type(op)), newBlock: ops.newBlock[op], blocks: ops.span(op), source: ops.source[op], dataLength: ops.dataLength[op], dataOffset: ops.dataOffset[op], raw: ops.isRaw(op) });
    }
  }
}

async function decompressAll(cow: CowReader): Promise<void> {
  const unit = Buffer.allocUnsafe(Math.max(cow.header.maxCompressionSize, cow.blockSize));
  const scratch = Buffer.allocUnsafe(Math.max(unit.length, 65536));
  for (let op = 0; op < cow.ops.count; op++) {
    if (cow.ops.dataLength[op] > 0) await cow.readPayload(op, unit.subarray(0, cow.unitSize(op)), scratch);
  }
}

/** Human-readable report, one fact per line (the order of Android's inspect_cow where it overlaps). */
export function formatInspection(r: CowInspection): string {
  const lines: string[] = [`File: ${r.file} (${r.fileSize} bytes)`];
  const h = r.header;
  if (h) {
    lines.push(`Version: ${r.version}`, `Header size: ${h.headerSize}`, `Footer size: ${h.footerSize}`, `Block size: ${h.blockSize}`);
    lines.push(`Merge ops: ${h.numMergeOps}`, `Readahead buffer: ${h.bufferSize} bytes`);
    if (h.majorVersion >= 3) {
      lines.push(`Op count: ${h.opCount} of ${h.opCountMax} slots`, `Sequence data: ${h.sequenceDataCount} entries`);
      lines.push(`Resume points: ${h.resumePointCount} (max ${h.resumePointMax})`);
      lines.push(`Compression: ${compressionName(h.compressionAlgorithm)}, factor ${h.maxCompressionSize} bytes`);
    } else {
      lines.push(`Cluster ops: ${h.clusterOps}`, `Compression: ${r.compression ?? compressionName(h.compressionAlgorithm)}`);
    }
  }
  if (r.footer) lines.push(`Footer: ops usage: ${r.footer.opsSize} bytes`, `Footer: op count: ${r.footer.numOps}`);
  for (const p of r.resumePoints ?? []) lines.push(`Resume point: label ${p.label} at op ${p.opIndex}`);
  if (r.parseMs !== undefined) lines.push(`Parse time: ${r.parseMs.toFixed(2)}ms`);
  if (r.opCounts) {
    const c = r.opCounts;
    lines.push(`Data ops: ${c.total}`, `Replace ops: ${c.replace}`, `Zero ops: ${c.zero}`, `Copy ops: ${c.copy}`, `Xor ops: ${c.xor}`);
    lines.push(`Blocks covered: ${r.blocks}`, `Data size: ${r.dataBytes} bytes`);
  }
  if (r.mergeOrder) {
    const m = r.mergeOrder;
    lines.push(`Merge order: ${m.total} ops, ${m.ordered} from the ordered part, ${m.merged} merged; first blocks ${m.first.join(', ')}`);
    lines.push(m.consistent ? 'Merge sequence is consistent.' : `Merge sequence is inconsistent: ${m.problem}`);
  }
  for (const op of r.ops ?? []) {
    const extra = op.type === 'replace' || op.type === 'xor' ? `, data_length ${op.dataLength} at ${op.dataOffset}${op.raw ? ' (raw)' : ''}` : '';
    lines.push(`  op ${op.index}: ${op.type} new_block ${op.newBlock}${op.blocks > 1 ? ` (+${op.blocks - 1})` : ''}, source ${op.source}${extra}`);
  }
  lines.push(r.valid ? 'Valid: yes' : `Valid: no: ${r.error?.message ?? r.mergeOrder?.problem ?? 'unknown'}`);
  return lines.join('\n');
}
