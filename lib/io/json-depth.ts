/**
 * A bound on the nesting of JSON read from files. JSON.parse itself copes with deep nesting, but
 * everything that walks the value afterwards recursively (JSON.stringify in an error message,
 * structuredClone, a validator) overflows the stack with a RangeError; a malformed file must give
 * a FormatError instead. No real safetensors header or adapter config nests more than a few levels.
 */

/** Deepest nesting of arrays and objects accepted in a file's JSON. */
export const MAX_JSON_DEPTH = 64;

/**
 * The offset in `text` of the first `[` or `{` that opens level `maxDepth + 1`, or -1 when the text
 * nests no deeper than `maxDepth`. A linear scan that skips string contents; it does not validate.
 */
export function excessNestingOffset(text: string, maxDepth: number = MAX_JSON_DEPTH): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}
