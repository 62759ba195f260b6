import type { Command } from 'commander';

/** Registers the payload commands (filled in by the issue that owns them). */
export function registerPayloadCommands(_program: Command): void {}
