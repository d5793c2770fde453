/**
 * Pachón's JupyterLab extension: Data panel, Tutorials menu, version in the status bar.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { showDialog, Dialog } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { api } from './api';
import { DataPanel } from './panel';

const PLUGIN_ID = '@pachon/lab:plugin';

/** Put `code` into a new cell below the active one of the current notebook, or a new notebook. */
async function insertCell(app: JupyterFrontEnd, code: string): Promise<void> {
  // Duck-typed so the extension needs no @jupyterlab/notebook build dependency.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const current: any = app.shell.currentWidget;
  if (current && current.content && 'activeCell' in current.content && current.sessionContext) {
    await app.commands.execute('notebook:insert-cell-below');
    current.content.activeCell.model.sharedModel.setSource(code);
    app.shell.activateById(current.id);
    return;
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const panel: any = await app.commands.execute('notebook:create-new', { kernelName: 'python3' });
  await panel.context.ready;
  panel.content.activeCell.model.sharedModel.setSource(code);
  app.shell.activateById(panel.id);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Data panel (TAP_SCHEMA, ADQL, history), Tutorials menu and the platform version.',
  autoStart: true,
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar | null) => {
    const panel = new DataPanel(code => insertCell(app, code));
    app.shell.add(panel, 'left', { rank: 150 });
    app.commands.addCommand('pachon:open-data-panel', {
      label: 'Open the Data panel',
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });

    app.commands.addCommand('pachon:copy-tutorials', {
      label: 'Copy the tutorials into my home',
      execute: async () => {
        try {
          const result = await api.tutorials();
          const list = result.copied.length ? result.copied.join('\n') : 'All tutorials were already there.';
          await showDialog({
            title: 'Tutorials',
            body: `Copied into ~/${result.folder}:\n${list}`,
            buttons: [Dialog.okButton()]
          });
          await app.commands.execute('filebrowser:go-to-path', { path: result.folder }).catch(() => undefined);
        } catch (error) {
          await showDialog({ title: 'Tutorials', body: (error as Error).message, buttons: [Dialog.okButton()] });
        }
      }
    });

    if (statusBar) {
      const item = new Widget();
      item.addClass('pachon-version');
      item.node.textContent = 'Pachón';
      statusBar.registerStatusItem('@pachon/lab:version', { item, align: 'left', rank: 1000 });
      void api
        .info()
        .then(info => {
          item.node.textContent = `Pachón ${info.version}`;
          item.node.title = `Platform ${info.platform_url} — TAP ${info.tap_url} — user ${info.user}`;
        })
        .catch(() => undefined);
    }
  }
};

export default plugin;
