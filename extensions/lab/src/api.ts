/**
 * Calls to the server extension under /pachon/ of the user's own Jupyter server.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IHistoryEntry, IPreview, ISchema } from './logic';

export interface IInfo {
  version: string;
  platform_url: string;
  tap_url: string;
  user: string;
}

async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'pachon', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = JSON.parse(text).message || text;
    } catch {
      // plain text error
    }
    throw new Error(message || `HTTP ${response.status}`);
  }
  return JSON.parse(text) as T;
}

export const api = {
  info: () => call<IInfo>('info'),
  schema: () => call<{ schemas: ISchema[] }>('tap/schema'),
  query: (query: string, preview = 100) =>
    call<IPreview>('tap/query', { method: 'POST', body: JSON.stringify({ query, preview }) }),
  history: () => call<{ user: string; queries: IHistoryEntry[] }>('tap/history'),
  tutorials: () => call<{ copied: string[]; folder: string }>('tutorials', { method: 'POST' })
};
