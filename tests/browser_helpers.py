"""Drive a real JupyterLab in headless Chromium, the way a student's browser does.

Used by tests/test_browser.py. nbval runs notebooks in a headless kernel and never sees the page;
these helpers start JupyterLab, open a notebook in Debian's Chromium through Playwright, run it
with JupyterLab's own `notebook:run-all-cells` command and read back what the page shows.
No browser is ever downloaded (`playwright install` is not used).
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_PATH = Path("/usr/bin/chromium")
# Headless, no sandbox (containers run as root) and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOW_TO_ENABLE = "install Debian's Chromium to enable it: apt-get install chromium"

# JupyterLab settings for the test session (its own settings folder, the user's stays untouched):
# render every cell (no virtual scrolling) so the whole notebook is on the page and in the
# screenshot, never autosave (the run must not write outputs back), and no news pop-up.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                  "scrollPastEnd": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}
SCREENSHOT_WIDTH = 1280
# A bound on the screenshot bitmap (1280 x 32000 RGBA is 160 MB); a longer notebook is cut there.
MAX_SCREENSHOT_HEIGHT = 32000


def find_chromium():
    """Path of Debian's Chromium, or None when it is not installed."""
    if CHROMIUM_PATH.is_file():
        return CHROMIUM_PATH
    found = shutil.which("chromium")
    return Path(found) if found else None


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_stat(pid):
    """(parent pid, start time in clock ticks) of a process from /proc, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])  # fields after the name: state, ppid, ..., starttime


def _children(pid):
    """{child pid: its start time} for the direct children of a process (Linux /proc; empty elsewhere)."""
    children = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _process_stat(entry.name)
        if stat is not None and stat[0] == pid:
            children[int(entry.name)] = stat[1]
    return children


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class JupyterLabServer:
    """JupyterLab on 127.0.0.1, a free port and a fresh token, serving `root_dir`.

    Use as a context manager: the server, and every kernel it started, is stopped on exit,
    also when the test inside failed.
    """

    def __init__(self, root_dir, work_dir, start_timeout=180):
        self.root_dir = Path(root_dir)
        self.work_dir = Path(work_dir)
        self.start_timeout = start_timeout
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work_dir / "jupyterlab.log"
        self.process = None
        self._kernels = {}  # pid -> start time, of every kernel process seen

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        settings_dir = self.work_dir / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        # The user's own Jupyter configuration and runtime files stay out of the test.
        env["JUPYTER_CONFIG_DIR"] = str(self.work_dir / "config")
        env["JUPYTER_RUNTIME_DIR"] = str(self.work_dir / "runtime")
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={self.work_dir / 'workspaces'}",
            # window.jupyterapp: how JupyterLab's own UI tests (Galata) reach the app's commands.
            "--LabApp.expose_app_in_browser=True",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root; Jupyter refuses that otherwise
        self.log_file = open(self.log_path, "wb")
        # Its own process group, so stop() can end the server with everything it spawned.
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.root_dir, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = (f"JupyterLab exited with code {self.process.returncode} while starting:\n"
                           f"{self.log_tail()}")
                self.stop()
                raise RuntimeError(message)
            try:
                self.api("GET", "status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        message = (f"JupyterLab did not answer on {self.base_url} within {self.start_timeout} s:\n"
                   f"{self.log_tail()}")
        self.stop()
        raise RuntimeError(message)

    def api(self, method, path, timeout=10):
        """Call the server's REST API with the token; returns the decoded JSON (or None)."""
        request = urllib.request.Request(f"{self.base_url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook_name, workspace):
        """URL that opens one notebook in its own fresh workspace (nothing restored from a previous one)."""
        return f"{self.base_url}/lab/workspaces/{workspace}/tree/{notebook_name}?token={self.token}"

    def shutdown_kernels(self):
        """Shut down every kernel this server runs (each notebook's kernel is freed before the next)."""
        self._remember_kernel_pids()
        for kernel in self.api("GET", "kernels"):
            try:
                self.api("DELETE", f"kernels/{kernel['id']}", timeout=60)
            except urllib.error.HTTPError as error:
                if error.code != 404:  # already gone is fine
                    raise

    def _remember_kernel_pids(self):
        # Kernels run in their own sessions, outside the server's process group: remember them so
        # stop() can end any the server failed to shut down.
        if self.process is not None:
            self._kernels.update(_children(self.process.pid))

    def stop(self):
        """Stop the server and its kernels: politely, then SIGTERM, then SIGKILL."""
        if self.process is None:
            return
        self._remember_kernel_pids()
        if self.process.poll() is None:
            try:
                self.api("POST", "shutdown", timeout=30)
                self.process.wait(timeout=30)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            _kill_group(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for pid, start_time in self._kernels.items():
            stat = _process_stat(pid)
            if stat is not None and stat[1] == start_time:  # still that kernel, not a reused pid
                _kill_group(pid, signal.SIGKILL)  # a kernel leads its own group (jupyter_client's launcher)
        self.process = None
        self.log_file.close()

    def log_tail(self, n_chars=4000):
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")[-n_chars:]


def committed_image_counts(notebook_path):
    """Number of image outputs (PNG or JPEG figures) of each code cell in the committed notebook.

    An output that also holds a widget view is not counted: JupyterLab draws the widget, and the
    image is only the still picture for front ends without widgets (vae_lesson.widgets)."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    counts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        counts.append(sum(1 for output in cell.get("outputs", [])
                          if {"image/png", "image/jpeg"} & set(output.get("data", {}))
                          and "application/vnd.jupyter.widget-view+json" not in output.get("data", {})))
    return counts


# ---- JavaScript run inside the page (window.jupyterapp is JupyterLab's application) --------------

_FIND_PANEL_JS = """
(name) => {
  const app = window.jupyterapp;
  if (!app) return null;
  return Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === name) || null;
}
"""


def _panel_js(body, asynchronous=True):
    """A page function ([name, arg]) => ... with `panel` bound to the notebook panel of `name`."""
    return f"""
{'async ' if asynchronous else ''}([name, arg]) => {{
  const panel = ({_FIND_PANEL_JS})(name);
  if (!panel) throw new Error('notebook ' + name + ' is not open in JupyterLab');
  {body}
}}
"""


_KERNEL_READY_JS = _panel_js("""
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return kernel ? kernel.status : 'no kernel';
""")

# Start the command without awaiting it here (it resolves only when the last cell finished):
# Python polls for the result so a hung notebook fails at the timeout instead of hanging.
_START_RUN_ALL_JS = _panel_js("""
  window.__runAll = {done: false};
  // Kernel messages that no cell shows (a widget callback's traceback goes to the log console).
  window.__kernelErrors = [];
  const kernel = panel.sessionContext.session.kernel;
  kernel.iopubMessage.connect((_, msg) => {
    // A cell's own errors are in its outputs; these are the rest (widget callbacks: comm_msg).
    if (msg.parent_header && msg.parent_header.msg_type === 'execute_request') return;
    const type = msg.header.msg_type;
    if (type === 'error') {
      window.__kernelErrors.push(msg.content.ename + ': ' + msg.content.evalue + '\\n' +
                                 msg.content.traceback.join('\\n'));
    } else if (type === 'stream' && msg.content.name === 'stderr') {
      window.__kernelErrors.push('stderr: ' + msg.content.text);
    }
  });
  // A kernel that dies (out of memory, say) is restarted by the server; the run must not wait forever.
  window.__kernelDeaths = [];
  panel.sessionContext.statusChanged.connect((_, status) => {
    if (status === 'dead' || status === 'autorestarting') window.__kernelDeaths.push(status);
  });
  const app = window.jupyterapp;
  app.shell.activateById(panel.id);
  app.commands.execute('notebook:run-all-cells').then(
    ok => { window.__runAll = {done: true, ok: ok}; },
    error => { window.__runAll = {done: true, ok: false, error: String(error)}; });
  return true;
""")

_KERNEL_IDLE_JS = _panel_js("""
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
""", asynchronous=False)

_RUN_FINISHED_JS = _panel_js("""
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const done = window.__runAll && window.__runAll.done;
  if (window.__kernelDeaths && window.__kernelDeaths.length) return done || !kernel || kernel.status === 'dead';
  const busyPrompts = Array.from(panel.content.node.querySelectorAll('.jp-InputPrompt'))
    .filter(p => p.textContent.includes('*')).length;
  return done && kernel && kernel.status === 'idle' && busyPrompts === 0;
""", asynchronous=False)

# What the page shows, cell by cell (code cells only): read from the notebook model and the DOM.
_REPORT_JS = _panel_js("""
  const cells = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const outputs = [];
    for (let i = 0; i < cell.model.outputs.length; i++) {
      const output = cell.model.outputs.get(i).toJSON();
      outputs.push({type: output.output_type, name: output.name || null,
                    text: output.output_type === 'error'
                      ? output.ename + ': ' + output.evalue
                      : (output.output_type === 'stream' ? [].concat(output.text).join('') : null),
                    mimes: Object.keys(output.data || {})});
    }
    const node = cell.node;
    const figures = Array.from(node.querySelectorAll('.jp-RenderedImage img'));
    // Output i of the model is drawn by the i-th child of the cell's output area.
    const children = cell.outputArea.widgets.map(w => w.node);
    const widgetChildren = children.filter((child, i) => outputs[i] &&
      outputs[i].mimes.includes('application/vnd.jupyter.widget-view+json'));
    cells.push({
      index: index,
      source: cell.model.sharedModel.getSource().slice(0, 80),
      executionCount: cell.model.executionCount,
      prompt: (node.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim(),
      outputs: outputs,
      figuresShown: figures.filter(img => img.complete && img.naturalWidth > 0).length,
      figuresBroken: figures.filter(img => !(img.complete && img.naturalWidth > 0)).length,
      errorsShown: Array.from(node.querySelectorAll(
        '[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.textContent.slice(0, 2000)),
      widgetOutputs: widgetChildren.length,
      widgetsRendered: widgetChildren.filter(child => child.querySelector('.jupyter-widgets')
        && !child.textContent.includes('Error displaying widget')).length,
    });
  });
  return {cells: cells, kernelErrors: window.__kernelErrors || [], kernelDeaths: window.__kernelDeaths || [],
          runAll: window.__runAll || null};
""")

_CONTENT_HEIGHT_JS = _panel_js("""
  const app = window.jupyterapp;
  app.shell.collapseLeft();
  app.shell.collapseRight();
  const scroller = panel.content.node.querySelector('.jp-WindowedPanel-outer') || panel.content.node;
  // Everything above and below the notebook's scroll area stays; the scroll area grows to its content.
  return Math.ceil(window.innerHeight - scroller.clientHeight + scroller.scrollHeight);
""")

_FETCH_IMAGES_JS = """
async (selectors) => {
  const out = [];
  for (const selector of selectors) {
    const img = document.querySelector(selector);
    if (!img) { out.push(null); continue; }
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let binary = '';
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    out.push(btoa(binary));
  }
  return out;
}
"""


def open_notebook(page, server, notebook_name, timeout_s=180):
    """Open a notebook in JupyterLab and wait until its kernel has started and is idle."""
    workspace = "browser-test-" + Path(notebook_name).stem.replace("_", "-")
    page.goto(server.lab_url(notebook_name, workspace), timeout=timeout_s * 1000)
    page.wait_for_function(f"(name) => ({_FIND_PANEL_JS})(name) !== null", arg=notebook_name,
                           timeout=timeout_s * 1000, polling=250)
    page.evaluate(_KERNEL_READY_JS, [notebook_name, None])
    page.wait_for_function(_KERNEL_IDLE_JS, arg=[notebook_name, None], timeout=timeout_s * 1000, polling=250)


def run_all_cells(page, notebook_name, timeout_s):
    """Run the notebook with JupyterLab's `notebook:run-all-cells`; wait until the kernel is idle.

    Raises AssertionError naming the cells still running when the run takes over `timeout_s`.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.evaluate(_START_RUN_ALL_JS, [notebook_name, None])
    try:
        page.wait_for_function(_RUN_FINISHED_JS, arg=[notebook_name, None], timeout=timeout_s * 1000, polling=500)
    except PlaywrightTimeoutError:
        running = [f"cell {cell['index']} {cell['prompt']} {(cell['source'].splitlines() or [''])[0]}"
                   for cell in notebook_report(page, notebook_name)["cells"] if "*" in cell["prompt"]]
        raise AssertionError(f"{notebook_name} did not finish within {timeout_s} s; still running or queued:\n"
                             + "\n".join(running[:5])) from None


def notebook_report(page, notebook_name):
    """Per code cell: execution count, output types, figures loaded on the page, stderr shown, widgets."""
    return page.evaluate(_REPORT_JS, [notebook_name, None])


def kernel_errors(page):
    """Errors and stderr the kernel sent since the run started, including ones no cell shows."""
    return page.evaluate("() => window.__kernelErrors || []")


def screenshot_notebook(page, notebook_name, path):
    """Screenshot the whole notebook: the window grows to the notebook's height first."""
    height = page.evaluate(_CONTENT_HEIGHT_JS, [notebook_name, None])
    height = max(600, min(height, MAX_SCREENSHOT_HEIGHT))
    page.set_viewport_size({"width": SCREENSHOT_WIDTH, "height": height})
    page.wait_for_timeout(1000)  # Lumino lays the panels out again after the resize
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def image_fingerprints(page, selectors):
    """SHA-256 of the bytes behind the first <img> matching each selector (None where none does).

    Comparing bytes, not the src attribute: ipywidgets gives every update a new blob: URL, even
    one holding the same picture.
    """
    return [None if data is None else hashlib.sha256(base64.b64decode(data)).hexdigest()
            for data in page.evaluate(_FETCH_IMAGES_JS, list(selectors))]


def drag_slider(page, slider_selector, fraction):
    """Drag an ipywidgets slider's handle with the mouse to `fraction` (0 to 1) of its track.

    Returns the slider's readout text after the drag, so a caller can tell that it moved.
    """
    track = page.locator(f"{slider_selector} .noUi-base").first
    handle = page.locator(f"{slider_selector} .noUi-handle").first
    track.scroll_into_view_if_needed()
    box, grip = track.bounding_box(), handle.bounding_box()
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + fraction * box["width"], y, steps=8)
    page.mouse.up()
    return page.locator(f"{slider_selector} .widget-readout").first.inner_text()


def settled_image_fingerprints(page, notebook_name, selectors, timeout_s=60):
    """image_fingerprints(page, selectors) once the kernel is idle and they stop changing.

    A drag sends a stream of updates; the images change with the first one. Waiting for the
    kernel to go idle, then for two equal readings in a row, gives the state after the last one.
    """
    page.wait_for_function(_KERNEL_IDLE_JS, arg=[notebook_name, None], timeout=timeout_s * 1000, polling=250)
    deadline = time.monotonic() + timeout_s
    previous = image_fingerprints(page, selectors)
    while True:
        page.wait_for_timeout(500)
        current = image_fingerprints(page, selectors)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
