import type { DaemonControl } from '../../../src/snapshot';

interface Handler {
  merging: boolean;
  polls: number;
  complete: boolean;
  failed: boolean;
}

/**
 * A snapuserd control endpoint as libsnapshot sees it (spec §2.7, §3.2): getstatus answers
 * `snapshot` until initiate_merge, `snapshot-merge` while merging, `snapshot-merge-complete` after
 * `pollsToComplete` polls, `snapshot-merge-failed` for a failed or unknown handler; a restart
 * forgets running merges, so unfinished handlers answer `snapshot` again. The real daemon is tested
 * in test/snapuserd; this one exercises the manager's side of the protocol.
 */
export class DaemonDouble implements DaemonControl {
  readonly handlers = new Map<string, Handler>();
  readonly sent: string[] = [];
  down = false;

  constructor(private readonly pollsToComplete = 2) {}

  serve(...names: string[]): this {
    for (const name of names) this.handlers.set(name, { merging: false, polls: 0, complete: false, failed: false });
    return this;
  }

  restart(): void {
    for (const h of this.handlers.values()) {
      h.merging = false;
      h.polls = 0;
    }
  }

  fail(name: string): void {
    this.handlers.get(name)!.failed = true;
  }

  async request(command: string): Promise<string> {
    if (this.down) throw new Error(`connect ECONNREFUSED snapuserd.sock`);
    this.sent.push(command);
    const [verb, name, ...rest] = command.split(',');
    const h = name === undefined || rest.length > 0 ? undefined : this.handlers.get(name);
    if (verb === 'initiate_merge') {
      if (!h || h.failed) return 'fail';
      h.merging = true;
      return 'success';
    }
    if (verb !== 'getstatus' || !h || h.failed) return verb === 'getstatus' ? 'snapshot-merge-failed' : 'fail';
    if (h.complete) return 'snapshot-merge-complete';
    if (!h.merging) return 'snapshot';
    if (++h.polls >= this.pollsToComplete) h.complete = true;
    return 'snapshot-merge';
  }
}
