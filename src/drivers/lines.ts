/**
 * Line framing for ASCII device protocols (MT-SICS scales, barcode scanners): a pure codec, no I/O.
 * Framing is its own small layer that resynchronises on garbage and counts what it dropped
 * (after node-serialport's parser-delimiter).
 *
 * - MT-SICS terminates every command and response with CR LF (MT-SICS reference manual, "Command
 *   formats": "<CR><LF>"). Bare LF and bare CR are tolerated as terminators too; CR LF counts once.
 * - Bytes decode as latin1 (one byte, one character). Printable bytes are 0x20-0x7E and 0xA0-0xFF.
 *   A line holding any other byte (NUL, TAB, DEL, a C1 control...) is rejected whole, never
 *   returned with the byte stripped: on a line as short as `S S     400.00 g` one corrupted byte
 *   dropped out of the middle turns 400.00 into 40000 (`400\x0e00` -> `40000`). Rejected lines
 *   count in `rejected` and their bytes in `dropped`.
 * - A line longer than `maxLineBytes` is discarded up to its terminator and counted in `overlong`
 *   (its bytes count in `dropped`), so a device spewing garbage without terminators never makes the
 *   buffer grow beyond `maxLineBytes`.
 * - Empty lines (e.g. CR CR) are not returned.
 */

export interface LineFramerOptions {
  /** Longest accepted line, terminator excluded. Default 256. */
  maxLineBytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;

function isPrintable(b: number): boolean {
  return (b >= 0x20 && b <= 0x7e) || b >= 0xa0;
}

export class LineFramer {
  private readonly max: number;
  private readonly buf: Buffer;
  private len = 0;
  /** True while skipping the rest of an overlong line. */
  private discarding = false;
  /** True once the current line holds a control byte: it is dropped at its terminator. */
  private poisoned = false;
  /** Bytes of the current line so far (kept while poisoned, to count them as dropped). */
  private lineBytes = 0;
  private rejectedLines = 0;
  /** True right after a CR, so that a following LF (possibly in the next chunk) ends nothing. */
  private afterCr = false;
  private droppedBytes = 0;
  private overlongLines = 0;

  constructor(opts: LineFramerOptions = {}) {
    const max = opts.maxLineBytes ?? 256;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxLineBytes must be a positive integer, got ${max}`);
    this.max = max;
    this.buf = Buffer.alloc(max);
  }

  /** Bytes discarded so far: the bytes of rejected and overlong lines, and of partial lines reset away. */
  get dropped(): number {
    return this.droppedBytes;
  }

  /** Lines discarded so far because they held a control byte. */
  get rejected(): number {
    return this.rejectedLines;
  }

  /** Lines discarded so far because they exceeded maxLineBytes. */
  get overlong(): number {
    return this.overlongLines;
  }

  /** Feeds received bytes; returns the complete lines they finish (without terminators), in order. */
  push(chunk: Buffer): string[] {
    const out: string[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === CR || b === LF) {
        const secondHalfOfCrLf = b === LF && this.afterCr;
        this.afterCr = b === CR;
        if (secondHalfOfCrLf) continue;
        if (this.discarding) {
          this.discarding = false;
        } else if (this.poisoned) {
          this.rejectedLines++;
          this.droppedBytes += this.lineBytes;
        } else if (this.len > 0) {
          out.push(this.buf.toString('latin1', 0, this.len));
        }
        this.len = 0;
        this.lineBytes = 0;
        this.poisoned = false;
        continue;
      }
      this.afterCr = false;
      if (this.discarding) {
        this.droppedBytes++;
        continue;
      }
      if (this.lineBytes === this.max) {
        // Overlong: drop what we have and everything up to the next terminator.
        this.overlongLines++;
        this.droppedBytes += this.lineBytes + 1;
        this.len = 0;
        this.lineBytes = 0;
        this.poisoned = false;
        this.discarding = true;
        continue;
      }
      this.lineBytes++;
      if (this.poisoned) continue;
      if (!isPrintable(b)) {
        this.poisoned = true;
        continue;
      }
      this.buf[this.len++] = b;
    }
    return out;
  }

  /**
   * Forgets any partial line (after a reconnect, say): its bytes are counted in `dropped`.
   * The counters are cumulative and are not reset.
   */
  reset(): void {
    this.droppedBytes += this.lineBytes;
    this.len = 0;
    this.lineBytes = 0;
    this.poisoned = false;
    this.discarding = false;
    this.afterCr = false;
  }
}
