// search_path as the server reports it ("$user", public) -> the entries analysis
// resolves unqualified names against. Pure.

/** Splits a search_path setting into unquoted entries: `"$user", public, "My Schema"` -> `["$user", "public", "My Schema"]`. */
export function splitSearchPath(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < value.length) {
    while (i < value.length && /[\s,]/.test(value[i]!)) i++;
    if (i >= value.length) break;
    if (value[i] === '"') {
      let name = '';
      i++;
      while (i < value.length) {
        if (value[i] === '"') {
          if (value[i + 1] === '"') { name += '"'; i += 2; continue; }
          i++;
          break;
        }
        name += value[i++];
      }
      out.push(name);
    } else {
      let j = i;
      while (j < value.length && value[j] !== ',') j++;
      // Unquoted identifiers fold to lower case, as the server does.
      out.push(value.slice(i, j).trim().toLowerCase());
      i = j;
    }
  }
  return out.filter((e) => e.length > 0);
}
