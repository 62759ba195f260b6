import { VabError, VabErrorCode } from '../util/errors';
import { partitionNameProblem } from '../util/names';

/**
 * The one check every partition name passes before vab uses it as part of a path
 * (`<out>/<name>.img`, `super/<name>.img`, `data/ota/<name>.cow`, ...). Names in a payload come
 * from a downloaded file, so this runs when the manifest is parsed, before anything is written.
 *
 * Names that differ only in case count as duplicates: on a case-insensitive file system
 * (vfat/exFAT media, a macOS volume) `System.img` and `system.img` are one file, and the second
 * partition would silently overwrite the first. Android's own names are lower case.
 */
export function checkPartitionNames(names: readonly string[], options: { code: VabErrorCode; file?: string; offset?: number; what: (index: number) => string }): void {
  const seen = new Map<string, number>();
  names.forEach((name, index) => {
    const fail = (problem: string) => {
      throw new VabError(options.code, `${options.what(index)} is named ${JSON.stringify(name)}: ${problem}`, { file: options.file, offset: options.offset });
    };
    const problem = partitionNameProblem(name);
    if (problem) fail(problem);
    const key = name.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) {
      const other = names[first];
      fail(other === name ? `${options.what(first)} has the same name` : `${options.what(first)} is named ${JSON.stringify(other)}, which differs only in case`);
    }
    seen.set(key, index);
  });
}
