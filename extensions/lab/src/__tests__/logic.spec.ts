import {
  columnLabel,
  filterSchemas,
  formatCell,
  historyItems,
  IHistoryEntry,
  ISchema,
  previewSummary,
  pyvoCell,
  sampleQuery
} from '../logic';

const schemas: ISchema[] = [
  {
    name: 'dp1',
    tables: [
      {
        name: 'dp1.Object',
        description: 'Objects detected on coadds',
        columns: [
          { name: 'objectId', datatype: 'long', unit: '', description: 'Unique id' },
          { name: 'coord_ra', datatype: 'double', unit: 'deg', description: 'Right ascension', ucd: 'pos.eq.ra' }
        ]
      },
      { name: 'dp1.Visit', description: 'Visits', columns: [{ name: 'visit', datatype: 'long', unit: '', description: '' }] }
    ]
  },
  { name: 'sim', tables: [{ name: 'sim.truth_stars', description: 'Truth', columns: [] }] }
];

describe('pyvoCell', () => {
  it('rebuilds the query with pachon.client and pyvo', () => {
    const cell = pyvoCell('SELECT TOP 5 * FROM dp1.Object;');
    expect(cell).toContain('import pachon.client');
    expect(cell).toContain('tap = pachon.client.tap()');
    expect(cell).toContain('SELECT TOP 5 * FROM dp1.Object\n');
    expect(cell).not.toContain(';');
    expect(cell).toContain('maxrec=10000');
  });
  it('quotes queries containing triple quotes safely', () => {
    const cell = pyvoCell('SELECT \'"""\' AS x FROM t');
    expect(cell).toContain('query = "SELECT');
  });
});

describe('schema browser helpers', () => {
  it('labels columns with units and types', () => {
    expect(columnLabel(schemas[0].tables[0].columns[1])).toBe('coord_ra [deg] (double)');
    expect(columnLabel(schemas[0].tables[0].columns[0])).toBe('objectId (long)');
  });
  it('builds sample queries with qualified names', () => {
    expect(sampleQuery('dp1', 'dp1.Object')).toBe('SELECT TOP 10 * FROM dp1.Object');
    expect(sampleQuery('sim', 'truth_stars', 5)).toBe('SELECT TOP 5 * FROM sim.truth_stars');
  });
  it('filters by table name, column name, description and UCD', () => {
    expect(filterSchemas(schemas, '')).toBe(schemas);
    expect(filterSchemas(schemas, 'visit').map(s => s.tables.map(t => t.name))).toEqual([['dp1.Visit']]);
    const byColumn = filterSchemas(schemas, 'ascension');
    expect(byColumn[0].tables[0].columns.map(c => c.name)).toEqual(['coord_ra']);
    expect(filterSchemas(schemas, 'pos.eq.ra')[0].tables[0].name).toBe('dp1.Object');
    expect(filterSchemas(schemas, 'sim')[0].tables[0].name).toBe('sim.truth_stars');
    expect(filterSchemas(schemas, 'nothing-like-this')).toEqual([]);
  });
});

describe('preview formatting', () => {
  it('formats cells', () => {
    expect(formatCell(null)).toBe('');
    expect(formatCell(42)).toBe('42');
    expect(formatCell(0.1 + 0.2)).toBe('0.3');
    expect(formatCell(1.5e-7)).toBe('1.500000e-7');
    expect(formatCell('x')).toBe('x');
  });
  it('summarises truncated and complete results', () => {
    const columns = [{ name: 'a', unit: '', datatype: 'int' }];
    expect(previewSummary({ columns, rows: [[1]], row_count: 1, truncated: false })).toBe('1 row × 1 columns');
    expect(previewSummary({ columns, rows: [[1], [2]], row_count: 500, truncated: true })).toBe(
      '500 rows × 1 columns (showing the first 2)'
    );
  });
});

describe('historyItems', () => {
  const entry = (id: number, at: string, query: string): IHistoryEntry => ({
    query_id: id,
    mode: 'sync',
    started_at: at,
    status: 'COMPLETED',
    query
  });
  it('orders newest first, drops repeats and shortens titles', () => {
    const long = 'SELECT ' + 'x, '.repeat(40) + 'y FROM t';
    const items = historyItems([
      entry(1, '2026-01-01T00:00:00', 'SELECT 1'),
      entry(2, '2026-01-02T00:00:00', 'SELECT   1'.replace('   ', ' ')),
      entry(3, '2026-01-03T00:00:00', long)
    ]);
    expect(items.map(i => i.entry.query_id)).toEqual([3, 2]);
    expect(items[0].title.length).toBe(80);
    expect(items[0].title.endsWith('...')).toBe(true);
  });
  it('respects the limit', () => {
    const many = Array.from({ length: 10 }, (_, i) => entry(i, `2026-01-0${i}T00:00:00`, `SELECT ${i}`));
    expect(historyItems(many, 3)).toHaveLength(3);
  });
});
