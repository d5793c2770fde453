/**
 * The Data side panel: browse TAP_SCHEMA, run ADQL with a preview, reopen past queries as pyvo cells.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { api } from './api';
import {
  columnLabel,
  filterSchemas,
  formatCell,
  historyItems,
  IPreview,
  ISchema,
  previewSummary,
  pyvoCell,
  sampleQuery
} from './logic';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, value);
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

export class DataPanel extends Widget {
  private schemas: ISchema[] = [];
  private readonly tree: HTMLDivElement;
  private readonly filter: HTMLInputElement;
  private readonly editor: HTMLTextAreaElement;
  private readonly status: HTMLDivElement;
  private readonly results: HTMLDivElement;
  private readonly historyList: HTMLUListElement;

  constructor(private readonly insertCell: (code: string) => Promise<void>) {
    super();
    this.id = 'pachon-data-panel';
    this.title.label = 'Data';
    this.title.caption = 'Pachón catalog: tables, ADQL queries, history';
    this.addClass('pachon-DataPanel');

    const browse = el('section', { class: 'pachon-section' });
    browse.appendChild(el('h3', {}, 'Tables'));
    this.filter = el('input', { type: 'search', placeholder: 'Filter tables and columns', class: 'pachon-filter' });
    this.filter.addEventListener('input', () => this.renderTree());
    browse.appendChild(this.filter);
    this.tree = el('div', { class: 'pachon-tree' });
    browse.appendChild(this.tree);

    const queryBox = el('section', { class: 'pachon-section' });
    queryBox.appendChild(el('h3', {}, 'ADQL'));
    this.editor = el('textarea', { class: 'pachon-adql', rows: '5', spellcheck: 'false' });
    this.editor.value = 'SELECT TOP 10 * FROM TAP_SCHEMA.tables';
    this.editor.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.shiftKey)) {
        event.preventDefault();
        void this.run();
      }
    });
    queryBox.appendChild(this.editor);
    const buttons = el('div', { class: 'pachon-buttons' });
    const run = el('button', { class: 'jp-mod-styled jp-mod-accept pachon-run' }, 'Run query');
    run.addEventListener('click', () => void this.run());
    const toCell = el('button', { class: 'jp-mod-styled pachon-to-cell' }, 'Insert as pyvo cell');
    toCell.addEventListener('click', () => void this.insertCell(this.pyvo(this.editor.value)));
    buttons.append(run, toCell);
    queryBox.appendChild(buttons);
    this.status = el('div', { class: 'pachon-status' });
    this.results = el('div', { class: 'pachon-results' });
    queryBox.append(this.status, this.results);

    const history = el('section', { class: 'pachon-section' });
    const header = el('h3', {}, 'Query history');
    const refresh = el('button', { class: 'jp-mod-styled pachon-refresh-history', title: 'Refresh' }, '↻');
    refresh.addEventListener('click', () => void this.loadHistory());
    header.appendChild(refresh);
    history.appendChild(header);
    this.historyList = el('ul', { class: 'pachon-history' });
    history.appendChild(this.historyList);

    this.node.append(browse, queryBox, history);
  }

  private pyvo(query: string): string {
    return pyvoCell(query);
  }

  private loaded = false;

  /** Load TAP_SCHEMA and the history the first time the panel is shown. */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this.loaded) {
      this.loaded = true;
      void this.refresh();
    }
  }

  async refresh(): Promise<void> {
    await Promise.all([this.loadSchema(), this.loadHistory()]);
  }

  async loadSchema(): Promise<void> {
    this.tree.textContent = 'Loading TAP_SCHEMA…';
    try {
      this.schemas = (await api.schema()).schemas;
      this.renderTree();
    } catch (error) {
      this.tree.textContent = `Could not load the tables: ${(error as Error).message}`;
    }
  }

  private renderTree(): void {
    this.tree.textContent = '';
    for (const schema of filterSchemas(this.schemas, this.filter.value)) {
      const schemaNode = el('details', { class: 'pachon-schema' });
      schemaNode.appendChild(el('summary', {}, schema.name));
      for (const table of schema.tables) {
        const tableNode = el('details', { class: 'pachon-table', 'data-table': table.name });
        const summary = el('summary', { title: table.description }, table.name);
        summary.addEventListener('dblclick', () => {
          this.editor.value = sampleQuery(schema.name, table.name);
        });
        tableNode.appendChild(summary);
        const list = el('ul', { class: 'pachon-columns' });
        for (const column of table.columns) {
          list.appendChild(el('li', { title: column.description }, columnLabel(column)));
        }
        tableNode.appendChild(list);
        schemaNode.appendChild(tableNode);
      }
      this.tree.appendChild(schemaNode);
    }
    if (!this.tree.childElementCount) {
      this.tree.textContent = this.schemas.length ? 'No match.' : 'No tables yet.';
    }
  }

  async run(): Promise<void> {
    const query = this.editor.value.trim();
    if (!query) {
      return;
    }
    this.status.textContent = 'Running…';
    this.results.textContent = '';
    try {
      const preview = await api.query(query);
      this.renderPreview(preview);
      this.status.textContent = previewSummary(preview);
      void this.loadHistory();
    } catch (error) {
      this.status.textContent = `Query failed: ${(error as Error).message}`;
    }
  }

  private renderPreview(preview: IPreview): void {
    const table = el('table', { class: 'pachon-preview' });
    const head = el('tr');
    for (const column of preview.columns) {
      head.appendChild(el('th', { title: column.datatype }, column.unit ? `${column.name} [${column.unit}]` : column.name));
    }
    table.appendChild(head);
    for (const row of preview.rows) {
      const tr = el('tr');
      for (const value of row) {
        tr.appendChild(el('td', {}, formatCell(value)));
      }
      table.appendChild(tr);
    }
    this.results.appendChild(table);
  }

  async loadHistory(): Promise<void> {
    try {
      const history = await api.history();
      this.historyList.textContent = '';
      for (const item of historyItems(history.queries)) {
        const li = el('li', { class: `pachon-history-item pachon-${item.entry.status.toLowerCase()}` });
        const link = el('a', { href: '#', title: `${item.entry.status} ${item.entry.started_at}\n${item.entry.query}` }, item.title);
        link.addEventListener('click', event => {
          event.preventDefault();
          void this.insertCell(this.pyvo(item.entry.query));
        });
        const edit = el('button', { class: 'pachon-history-edit', title: 'Edit in the ADQL box' }, '✎');
        edit.addEventListener('click', () => {
          this.editor.value = item.entry.query;
        });
        li.append(link, edit);
        this.historyList.appendChild(li);
      }
      if (!this.historyList.childElementCount) {
        this.historyList.appendChild(el('li', {}, 'No queries yet.'));
      }
    } catch (error) {
      this.historyList.textContent = `History unavailable: ${(error as Error).message}`;
    }
  }
}
