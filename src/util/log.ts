import winston from 'winston';

/**
 * Structured logs go to a file (or stderr) as JSON lines; human text for users is printed to
 * stdout by the CLI, never through the logger.
 */
export type Logger = winston.Logger;

export interface LogOptions {
  /** JSON lines are appended here; when absent they go to stderr. */
  file?: string;
  level?: string;
  /** Silences everything (tests that check stdout/stderr). */
  silent?: boolean;
}

export function createLogger(component: string, options: LogOptions = {}): Logger {
  const level = options.level ?? process.env.VAB_LOG_LEVEL ?? 'info';
  const transport = options.file
    ? new winston.transports.File({ filename: options.file })
    : new winston.transports.Stream({ stream: process.stderr });
  return winston.createLogger({
    level,
    silent: options.silent ?? false,
    defaultMeta: { component, pid: process.pid },
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json()),
    transports: [transport],
  });
}

/** A logger that drops everything: the default for library code used without a logger. */
export const nullLogger: Logger = winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
