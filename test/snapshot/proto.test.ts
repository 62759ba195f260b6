import {
  decodeSnapshotStatus,
  decodeUpdateStatus,
  emptySnapshotStatus,
  emptyUpdateStatus,
  encodeSnapshotStatus,
  encodeUpdateStatus,
  MergeFailureCode,
  MergePhase,
  SnapshotState,
  UpdateState,
  updateStateFromText,
  updateStateText,
} from '../../src/snapshot/proto';

/*
 * The expected bytes are built here from the protobuf wire format alone (tag = field << 3 | wire
 * type; varints 7 bits at a time, low first; length-delimited strings), with the field numbers of
 * AOSP's fs_mgr/libsnapshot/android/snapshot/snapshot.proto, not with protobufjs.
 */
function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return out;
}
const VARINT = 0;
const LENGTH = 2;
const field = (n: number, wire: number) => varint((n << 3) | wire);
const u = (n: number, value: number | bigint) => [...field(n, VARINT), ...varint(value)];
const str = (n: number, s: string) => [...field(n, LENGTH), ...varint(Buffer.byteLength(s)), ...Buffer.from(s)];

describe('SnapshotStatus wire format', () => {
  const status = {
    ...emptySnapshotStatus('system'),
    state: SnapshotState.MERGING,
    device_size: 256 * 1024 * 1024,
    snapshot_size: 256 * 1024 * 1024,
    cow_file_size: 77_000_000,
    using_snapuserd: true,
    old_partition_size: 300 * 1024 * 1024,
    compression_algorithm: 'lz4',
    estimated_cow_size: 76_000_000,
    batched_writes: true,
    estimated_ops_buffer_size: 70_000,
    compression_factor: 65536,
    read_ahead_size: 32,
    num_verify_threads: 2,
  };
  const golden = Buffer.from([
    ...str(1, 'system'),
    ...u(2, 2), // MERGING
    ...u(3, 268435456),
    ...u(4, 268435456),
    // 5 cow_partition_size = 0: proto3 leaves defaults off the wire
    ...u(6, 77_000_000),
    ...u(9, 1),
    ...u(10, 314572800),
    ...str(11, 'lz4'),
    ...u(12, 76_000_000),
    ...u(14, 1),
    ...u(15, 70_000),
    ...u(16, 65536), // two-byte tag 0x80 0x01
    ...u(17, 32),
    ...u(20, 2),
  ]);

  it('encodes to the bytes the schema prescribes', async () => {
    // The helpers themselves, against bytes worked out by hand.
    expect(str(1, 'ab')).toEqual([0x0a, 0x02, 0x61, 0x62]);
    expect(u(2, 2)).toEqual([0x10, 0x02]);
    expect(u(16, 65536)).toEqual([0x80, 0x01, 0x80, 0x80, 0x04]);
    expect((await encodeSnapshotStatus(status)).toString('hex')).toBe(golden.toString('hex'));
  });

  it('decodes hand-made bytes field by field', async () => {
    expect(await decodeSnapshotStatus(golden, 'golden')).toEqual(status);
  });

  it('reads fields it does not know (a newer Android) and values beyond 32 bits', async () => {
    const bytes = Buffer.from([...str(1, 'vendor'), ...u(3, 2n ** 40n), ...u(99, 7)]);
    const decoded = await decodeSnapshotStatus(bytes, 'f');
    expect(decoded.name).toBe('vendor');
    expect(decoded.device_size).toBe(2 ** 40);
    const large = await encodeSnapshotStatus({ ...emptySnapshotStatus('vendor'), device_size: 2 ** 40 });
    expect(large.toString('hex')).toBe(Buffer.from([...str(1, 'vendor'), ...u(3, 2n ** 40n)]).toString('hex'));
  });

  it('refuses an unknown SnapshotState, a truncated message and a size beyond 2^53, naming the file', async () => {
    await expect(decodeSnapshotStatus(Buffer.from([...str(1, 'a'), ...u(2, 9)]), '/x/snapshots/a')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining('/x/snapshots/a') });
    await expect(decodeSnapshotStatus(Buffer.from(str(1, 'system')).subarray(0, 4), 'f')).rejects.toMatchObject({ code: 'ECORRUPT' });
    await expect(decodeSnapshotStatus(Buffer.from(u(3, 2n ** 60n)), 'f')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining('2^53') });
  });
});

describe('SnapshotUpdateStatus wire format', () => {
  const status = {
    ...emptyUpdateStatus(UpdateState.MergeFailed),
    using_snapuserd: true,
    merge_phase: MergePhase.SECOND_PHASE,
    merge_failure_code: MergeFailureCode.UnknownTargetType,
    source_build_fingerprint: 'vab/test:1',
    userspace_snapshots: true,
    cow_op_merge_size: 0,
    num_worker_threads: 3,
  };
  const golden = Buffer.from([...u(1, 6), ...u(5, 1), ...u(6, 2), ...u(7, 9), ...str(8, 'vab/test:1'), ...u(9, 1), ...u(14, 3)]);

  it('encodes and decodes as the schema says', async () => {
    expect((await encodeUpdateStatus(status)).toString('hex')).toBe(golden.toString('hex'));
    expect(await decodeUpdateStatus(golden, 'state')).toEqual(status);
  });

  it('state None is the empty message, as Android writes it', async () => {
    expect((await encodeUpdateStatus(emptyUpdateStatus())).length).toBe(0);
    expect((await decodeUpdateStatus(Buffer.alloc(0), 'state')).state).toBe(UpdateState.None);
  });

  it('refuses unknown enum values', async () => {
    await expect(decodeUpdateStatus(Buffer.from(u(1, 8)), 'state')).rejects.toMatchObject({ code: 'ECORRUPT' });
    await expect(decodeUpdateStatus(Buffer.from(u(6, 3)), 'state')).rejects.toMatchObject({ code: 'ECORRUPT' });
    await expect(decodeUpdateStatus(Buffer.from(u(7, 21)), 'state')).rejects.toMatchObject({ code: 'ECORRUPT' });
  });
});

describe('UpdateState text', () => {
  it("matches snapshot.cpp's operator<< and reads back", () => {
    const texts = [UpdateState.None, UpdateState.Initiated, UpdateState.Unverified, UpdateState.Merging, UpdateState.MergeNeedsReboot, UpdateState.MergeCompleted, UpdateState.MergeFailed, UpdateState.Cancelled].map(updateStateText);
    expect(texts).toEqual(['none', 'initiated', 'unverified', 'merging', 'merge-needs-reboot', 'merge-completed', 'merge-failed', 'cancelled']);
    for (const [i, text] of texts.entries()) expect(updateStateFromText(text)).toBe(i);
    expect(updateStateFromText('Merging')).toBeUndefined();
  });
});
