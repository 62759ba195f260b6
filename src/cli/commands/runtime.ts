import type { Command } from 'commander';

/** Registers the runtime commands (filled in by the issue that owns them). */
export function registerRuntimeCommands(_program: Command): void {}
