import type { Command } from 'commander';

/** Registers the demo commands (filled in by the issue that owns them). */
export function registerDemoCommands(_program: Command): void {}
