/**
 * Pure helpers of the Data panel (unit-tested with Jest; no JupyterLab imports here).
 */

export interface IColumn {
  name: string;
  datatype: string;
  unit: string;
  ucd?: string;
  description: string;
}

export interface ITable {
  name: string;
  description: string;
  columns: IColumn[];
}

export interface ISchema {
  name: string;
  tables: ITable[];
}

export interface IPreview {
  columns: { name: string; unit: string; datatype: string }[];
  rows: unknown[][];
  row_count: number;
  truncated: boolean;
}

export interface IHistoryEntry {
  query_id: number;
  mode: string;
  job_id?: string | null;
  started_at: string;
  duration_s?: number | null;
  row_count?: number | null;
  status: string;
  query: string;
  error_message?: string | null;
}

/** Python source of a notebook cell that re-runs `query` with pyvo through pachon.client. */
export function pyvoCell(query: string, maxrec = 10000): string {
  const text = query.trim().replace(/;+\s*$/, '');
  const quoted = text.includes('"""') ? JSON.stringify(text) : `"""\n${text}\n"""`;
  return [
    'import pachon.client',
    '',
    'tap = pachon.client.tap()  # pyvo TAPService, authenticated with this server\'s token',
    `query = ${quoted}`,
    `results = tap.search(query, maxrec=${maxrec})`,
    'table = results.to_table()',
    'table'
  ].join('\n');
}

/** Text shown for one column in the schema browser: name, unit in brackets, datatype. */
export function columnLabel(column: IColumn): string {
  const unit = column.unit ? ` [${column.unit}]` : '';
  return `${column.name}${unit} (${column.datatype || '?'})`;
}

/** A starter query for a table, e.g. when the user clicks it in the browser. */
export function sampleQuery(schema: string, table: string, rows = 10): string {
  const qualified = table.includes('.') ? table : `${schema}.${table}`;
  return `SELECT TOP ${rows} * FROM ${qualified}`;
}

/** Filter schemas/tables/columns by a case-insensitive text (matches names and descriptions). */
export function filterSchemas(schemas: ISchema[], text: string): ISchema[] {
  const needle = text.trim().toLowerCase();
  if (!needle) {
    return schemas;
  }
  const hit = (s: string | undefined) => (s || '').toLowerCase().includes(needle);
  const out: ISchema[] = [];
  for (const schema of schemas) {
    const tables: ITable[] = [];
    for (const table of schema.tables) {
      if (hit(table.name) || hit(table.description) || hit(schema.name)) {
        tables.push(table);
        continue;
      }
      const columns = table.columns.filter(c => hit(c.name) || hit(c.description) || hit(c.ucd));
      if (columns.length) {
        tables.push({ ...table, columns });
      }
    }
    if (tables.length) {
      out.push({ name: schema.name, tables });
    }
  }
  return out;
}

/** One cell of the preview table as text (null → empty, numbers shortened). */
export function formatCell(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      return String(value);
    }
    return Math.abs(value) >= 1e6 || (Math.abs(value) < 1e-4 && value !== 0)
      ? value.toExponential(6)
      : String(Number(value.toPrecision(10)));
  }
  return String(value);
}

/** Summary line under the preview. */
export function previewSummary(preview: IPreview): string {
  const shown = preview.rows.length;
  const cols = preview.columns.length;
  if (preview.truncated) {
    return `${preview.row_count} rows × ${cols} columns (showing the first ${shown})`;
  }
  return `${preview.row_count} row${preview.row_count === 1 ? '' : 's'} × ${cols} columns`;
}

/** History entries newest first, de-duplicated by query text, with a one-line title. */
export function historyItems(entries: IHistoryEntry[], limit = 50): { title: string; entry: IHistoryEntry }[] {
  const seen = new Set<string>();
  const sorted = [...entries].sort((a, b) => b.started_at.localeCompare(a.started_at));
  const out: { title: string; entry: IHistoryEntry }[] = [];
  for (const entry of sorted) {
    const key = entry.query.trim();
    if (seen.has(key)) {
      continue;
    }
    seen.add(key);
    const oneLine = key.replace(/\s+/g, ' ');
    const title = oneLine.length > 80 ? `${oneLine.slice(0, 77)}...` : oneLine;
    out.push({ title, entry });
    if (out.length >= limit) {
      break;
    }
  }
  return out;
}
