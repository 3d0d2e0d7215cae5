/**
 * The tag population of an RFID simulator's command line (`--tags`, `--gtins`, `--miss`,
 * `--rssi-sigma`, `--script`, `--replay`), shared by `shelfgate sim r200` and `shelfgate sim llrp`.
 */
import { readFileSync } from 'node:fs';
import { parseNumber as num } from '../cli-util';
import { parsePopulationScript, TagPopulation, type ScriptMove } from './population';
import { parseHexLines } from './r200-sim';

export interface PopulationCliValues {
  tags?: string;
  gtins?: string;
  miss?: string;
  'rssi-sigma'?: string;
  script?: string;
  replay?: string;
}

/**
 * Builds the population; a bad number throws the CLI's UsageError (exit 64), a file that cannot be
 * read is returned as `unreadable` (the caller exits 66, EX_NOINPUT).
 */
export function populationFromCli(
  values: PopulationCliValues,
  zones: number,
  seed: number,
): { population: TagPopulation; script: ScriptMove[]; replay: Buffer[] | undefined } | { unreadable: string } {
  const population = new TagPopulation({
    tags: num('tags', values.tags, 200, { int: true, min: 1, max: 1_000_000 }),
    gtins: num('gtins', values.gtins, 20, { int: true, min: 1, max: 99_999 }),
    zones,
    seed,
    missProbability: num('miss', values.miss, 0.1, { min: 0, max: 1 }),
    rssiSigmaDb: num('rssi-sigma', values['rssi-sigma'], 2, { min: 0 }),
  });
  try {
    const script = values.script !== undefined ? parsePopulationScript(readFileSync(values.script, 'utf8')) : [];
    const replay = values.replay !== undefined ? parseHexLines(readFileSync(values.replay, 'utf8')) : undefined;
    return { population, script, replay };
  } catch (e) {
    return { unreadable: (e as Error).message };
  }
}
