import type { Command } from 'commander';

/** Registers the cow commands (filled in by the issue that owns them). */
export function registerCowCommands(_program: Command): void {}
