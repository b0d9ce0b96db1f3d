#!/usr/bin/env python3
"""Generate the classifier's labelled corpus from REAL tool output.

Each case writes small broken code into a temporary directory, runs the real tool on it,
and records `$ <command>` followed by the combined stdout/stderr in
`crates/classify/corpus/<class>/<case>.log`; `crates/classify/corpus/index.json` lists every
case with its class, tool, tool version and command. The temporary directory's path is
rewritten to a GitHub-runner-like path so regenerating gives stable files.

Infrastructure cases are real failures too (a DNS lookup of a `.invalid` name, a connection
to a blackholed address, writes to /dev/full, a heap limit, a local HTTP server answering
503/429). Messages that cannot be produced here (runner lost, image pulls, OOM kills by the
kernel, CI cancellation) are copied verbatim from the CI systems' documented formats and are
marked `"source": "documented"` in the index.

CI does not regenerate the corpus (tools and their versions drift); it is committed.

Tools (put them on PATH first):
  python3 -m venv venv && venv/bin/pip install ruff black flake8 pylint isort mypy pytest
  npm install eslint@9 prettier typescript jest vitest mocha pyright ts5@npm:typescript@5.4
  (and a `tsc5` link to node_modules/ts5/bin/tsc on PATH)
  apt-get install golang-go rubocop ruby-rspec shellcheck cmake clang default-jdk
  rustup toolchain with clippy and rustfmt

Usage: scripts/corpus/generate.py [--only SUBSTRING] [--node-modules DIR]
"""

import argparse
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "classify" / "corpus"
RUNNER_DIR = "/home/runner/work/app/app"
CASES = []


def case(cls, name, tool, version, cmd, files=None, env=None, timeout=180, node=False):
    CASES.append(dict(cls=cls, name=name, tool=tool, version=version, cmd=cmd,
                      files=files or {}, env=env or {}, timeout=timeout, node=node))


def documented(cls, name, tool, source, text):
    CASES.append(dict(cls=cls, name=name, tool=tool, source=source, text=text))


def run(cmd, cwd, env, timeout):
    full_env = dict(os.environ)
    full_env.update({"NO_COLOR": "1", "TERM": "dumb", "CI": "true"})
    full_env.update(env)
    try:
        p = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return -1, out


def version_of(cmd):
    if not cmd:
        return None
    _, out = run(cmd, "/", {}, 60)
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    return lines[0] if lines else None


def write_files(d, files):
    for rel, content in files.items():
        p = pathlib.Path(d) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def wheel(dirpath, name, version, requires=()):
    """A minimal wheel with real metadata, so pip's resolver works offline."""
    fn = pathlib.Path(dirpath) / f"{name}-{version}-py3-none-any.whl"
    di = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(fn, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{di}/METADATA", meta)
        z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: sentinel\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{di}/RECORD", "")


class StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        if self.status == 429:
            self.send_header("Retry-After", "60")
        self.end_headers()
        self.wfile.write(http.server.BaseHTTPRequestHandler.responses.get(self.status, ("",))[0].encode())

    def log_message(self, *a):
        pass


def blackhole_server():
    """Accepts connections and never answers: a real read timeout."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []

    def loop():
        while True:
            conn, _ = srv.accept()
            held.append(conn)

    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]


def status_server(status):
    handler = type(f"H{status}", (StatusHandler,), {"status": status})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


# ---------------------------------------------------------------------------------------------
# Python
PY = "python3 --version"
case("linting", "ruff-check-unused-import", "ruff", "ruff --version", "ruff check .",
     {"app.py": "import os\nimport sys\n\nprint(sys.argv)\n"})
case("linting", "ruff-check-undefined-name-concise", "ruff", "ruff --version",
     "ruff check --output-format=concise .",
     {"app/main.py": "def handler(event):\n    return proces(event)\n", "app/__init__.py": ""})
case("linting", "flake8-style", "flake8", "flake8 --version", "flake8 .",
     {"app.py": "import os\ndef f( x ):\n    return x\nclass A: pass\n"})
case("linting", "pylint-unused-variable", "pylint", "pylint --version",
     "pylint --disable=C app.py",
     {"app.py": "def compute(values):\n    total = 0\n    unused = 1\n    for v in values:\n        total += v\n    return total\n"})
case("formatting", "black-check", "black", "black --version", "black --check .",
     {"app.py": "x = {  'a':37,'b':42,\n'c':927}\n"})
case("formatting", "black-check-diff-two-files", "black", "black --check --diff .",
     "black --check --diff .",
     {"src/a.py": "def f(a,b):\n  return a+b\n", "src/b.py": "print ( 'x' )\n"})
case("formatting", "ruff-format-check", "ruff", "ruff --version", "ruff format --check .",
     {"app.py": "def f(a,b):\n  return a+b\n"})
case("formatting", "isort-check", "isort", "isort --version-number", "isort --check-only --diff .",
     {"app.py": "import sys\nimport os\n\nprint(os, sys)\n"})
case("type_checking", "mypy-arg-type", "mypy", "mypy --version", "mypy app.py",
     {"app.py": "def double(x: int) -> int:\n    return x * 2\n\n\ndouble('a')\n"})
case("type_checking", "mypy-return-value-strict", "mypy", "mypy --version", "mypy --strict src",
     {"src/service.py": "def name() -> str:\n    return 1\n"})
case("type_checking", "mypy-attr-defined", "mypy", "mypy --version", "mypy .",
     {"models.py": "class User:\n    name: str = ''\n\n\nprint(User().email)\n"})
case("type_checking", "mypy-union-attr", "mypy", "mypy --version", "mypy --strict app",
     {"app/__init__.py": "", "app/repo.py": "from typing import Optional\n\n\ndef find(name: str) -> Optional[str]:\n    return None if name else name\n\n\ndef size(name: str) -> int:\n    return find(name).count('a')\n"})
case("type_checking", "pyright-assignment", "pyright", "pyright --version", "pyright app.py",
     {"app.py": "x: int = 'a'\n"}, node=True)
case("type_checking", "pyright-call-arg", "pyright", "pyright --version", "pyright",
     {"lib.py": "def f(a: int) -> None: ...\n\n\nf('x')\n", "pyrightconfig.json": "{}\n"}, node=True)
case("test_failure", "pytest-assert", "pytest", "python3 -m pytest --version",
     "python3 -m pytest -p no:cacheprovider",
     {"test_calc.py": "def add(a, b):\n    return a - b\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_ok():\n    assert add(2, 0) == 2\n"})
case("test_failure", "pytest-exception-verbose", "pytest", "python3 -m pytest --version",
     "python3 -m pytest -p no:cacheprovider -v tests",
     {"tests/test_parse.py": "import json\n\n\ndef test_parse():\n    assert json.loads('{bad')['a'] == 1\n"})
case("test_failure", "unittest-fail", "unittest", PY, "python3 -m unittest -v",
     {"test_strings.py": "import unittest\n\n\nclass TestStrings(unittest.TestCase):\n    def test_upper(self):\n        self.assertEqual('foo'.upper(), 'FOo')\n\n\nif __name__ == '__main__':\n    unittest.main()\n"})
case("import_error", "python-module-not-found", "python", PY, "python3 app.py",
     {"app.py": "import yaml\n\nprint(yaml.safe_load('a: 1'))\n"})
case("import_error", "pytest-collection-import-error", "pytest", "python3 -m pytest --version",
     "python3 -m pytest -p no:cacheprovider",
     {"tests/test_s3.py": "import boto3\n\n\ndef test_bucket():\n    assert boto3\n"})
case("import_error", "python-cannot-import-name", "python", PY, "python3 -m app",
     {"app/__init__.py": "", "app/__main__.py": "from app.util import parse_config\n", "app/util.py": "def parse():\n    pass\n"})
case("import_error", "mypy-missing-module", "mypy", "mypy --version", "mypy app.py",
     {"app.py": "import flask_sqlalchemy_lite\n"})
case("import_error", "pyright-missing-import", "pyright", "pyright --version", "pyright app.py",
     {"app.py": "import numpy as np\n\nprint(np.zeros(3))\n"}, node=True)
case("deprecation", "python-warning-as-error", "python", PY, "python3 -W error::DeprecationWarning app.py",
     {"app.py": "import warnings\n\n\ndef old_api():\n    warnings.warn('old_api() is deprecated, use new_api()', DeprecationWarning, stacklevel=2)\n\n\nold_api()\n"})
case("deprecation", "pytest-deprecation-as-error", "pytest", "python3 -m pytest --version",
     "python3 -m pytest -p no:cacheprovider -W error::DeprecationWarning",
     {"lib.py": "import warnings\n\n\ndef load(path):\n    warnings.warn('load() is deprecated; use read()', DeprecationWarning, stacklevel=2)\n    return path\n",
      "test_lib.py": "from lib import load\n\n\ndef test_load():\n    assert load('x') == 'x'\n"})
case("deprecation", "pytest-futurewarning-as-error", "pytest", "python3 -m pytest --version",
     "python3 -m pytest -p no:cacheprovider -q -W error::FutureWarning",
     {"test_frame.py": "import warnings\n\n\ndef resample(rule):\n    if rule == 'M':\n        warnings.warn(\"'M' is deprecated and will be removed in a future version, please use 'ME' instead.\", FutureWarning)\n    return rule\n\n\ndef test_resample():\n    assert resample('M') == 'M'\n"})
case("build_error", "python-syntax-error", "python", PY, "python3 -m compileall -q src",
     {"src/app.py": "def handler(event:\n    return event\n"})
case("build_error", "python-indentation-error", "python", PY, "python3 src/main.py",
     {"src/main.py": "def main():\nprint('x')\n"})

# pip resolution against a local wheel directory (real resolver output, no network)
PIP_FILES = {}
case("dependency_issue", "pip-resolution-impossible", "pip", "python3 -m pip --version",
     "python3 -m venv .venv && .venv/bin/pip install --disable-pip-version-check --no-index --find-links wheels 'webkit==1.0' 'corelib==2.0'",
     {"__wheels__": [("webkit", "1.0", ["corelib<2"]), ("corelib", "1.0", []), ("corelib", "2.0", [])]})
case("dependency_issue", "pip-no-matching-version", "pip", "python3 -m pip --version",
     "python3 -m venv .venv && .venv/bin/pip install --disable-pip-version-check --no-index --find-links wheels 'corelib>=5'",
     {"__wheels__": [("corelib", "1.0", []), ("corelib", "2.0", [])]})
case("dependency_issue", "pip-requirements-conflict", "pip", "python3 -m pip --version",
     "python3 -m venv .venv && .venv/bin/pip install --disable-pip-version-check --no-index --find-links wheels -r requirements.txt",
     {"requirements.txt": "apiclient==3.1\nhttpcore==0.9\n",
      "__wheels__": [("apiclient", "3.1", ["httpcore>=1.0"]), ("httpcore", "0.9", []), ("httpcore", "1.2", [])]})

# ---------------------------------------------------------------------------------------------
# JavaScript / TypeScript
ESLINT_CFG = "export default [{ rules: { 'no-unused-vars': 'error', 'no-undef': 'error', eqeqeq: 'error', 'no-var': 'error' } }];\n"
PKG = '{"name": "app", "version": "1.0.0", "type": "module"}\n'
case("linting", "eslint-unused-undef", "eslint", "eslint --version", "eslint .",
     {"eslint.config.js": ESLINT_CFG, "package.json": PKG, "src/app.js": "const unused = 1;\nrender();\n"}, node=True)
case("linting", "eslint-eqeqeq-var", "eslint", "eslint --version", "eslint src",
     {"eslint.config.js": ESLINT_CFG, "package.json": PKG, "src/util.js": "var a = 1;\nexport function eq(b) {\n  return a == b;\n}\n"}, node=True)
case("formatting", "prettier-check-js", "prettier", "prettier --version", "prettier --check .",
     {"src/app.js": "const a = {b:1,c:2}\nfunction f(x){return x}\n", "package.json": PKG}, node=True)
case("formatting", "prettier-check-css-md", "prettier", "prettier --check 'src/**/*.{css,md,ts}'",
     "prettier --check 'src/**/*.{css,md,ts}'",
     {"src/style.css": "a{color:red;background:blue}\n", "src/README.md": "# Title\n* a\n* b\n", "src/x.ts": "let x:number=1\n"}, node=True)
TSCONFIG = '{"compilerOptions": {"strict": true, "noEmit": true, "target": "es2020", "module": "commonjs"}, "include": ["src"]}\n'
case("type_checking", "tsc7-assign", "tsc", "tsc --version", "tsc -p .",
     {"tsconfig.json": TSCONFIG, "src/app.ts": "let count: number = 'a';\nexport { count };\n"})
case("type_checking", "tsc5-argument", "tsc", "tsc5 --version", "tsc5 -p .",
     {"tsconfig.json": TSCONFIG, "src/api.ts": "function get(id: number): string { return String(id); }\nexport const r = get('42');\n"})
case("type_checking", "tsc5-property-pretty", "tsc", "tsc5 --version", "tsc5 -p . --pretty",
     {"tsconfig.json": TSCONFIG, "src/user.ts": "interface User { name: string }\nexport const u: User = { name: 'a' };\nexport const e = u.email;\n"})
case("type_checking", "tsc5-null-check", "tsc", "tsc5 --version", "tsc5 --noEmit --strict src/list.ts",
     {"src/list.ts": "export function first(xs: string[] | undefined): number {\n  return xs.length;\n}\n"})
case("import_error", "tsc5-cannot-find-module", "tsc", "tsc5 --version", "tsc5 -p .",
     {"tsconfig.json": TSCONFIG, "src/index.ts": "import leftPad from 'left-pad-ts';\nexport const x = leftPad;\n"})
case("import_error", "node-cannot-find-module-cjs", "node", "node --version", "node server.js",
     {"server.js": "const express = require('express');\nexpress().listen(3000);\n"})
case("import_error", "node-esm-module-not-found", "node", "node --version", "node index.mjs",
     {"index.mjs": "import chalk from 'chalk';\nconsole.log(chalk.red('x'));\n"})
case("import_error", "jest-cannot-find-module", "jest", "jest --version", "jest --ci",
     {"package.json": '{"name": "app", "version": "1.0.0"}\n', "app.test.js": "const { sum } = require('./lib/sum');\ntest('sum', () => expect(sum(1, 2)).toBe(3));\n"}, node=True)
case("test_failure", "jest-assertion", "jest", "jest --version", "jest --ci",
     {"package.json": '{"name": "app", "version": "1.0.0"}\n', "sum.js": "module.exports = (a, b) => a - b;\n",
      "sum.test.js": "const sum = require('./sum');\ndescribe('sum', () => {\n  test('adds numbers', () => {\n    expect(sum(1, 2)).toBe(3);\n  });\n});\n"}, node=True)
case("test_failure", "vitest-assertion", "vitest", "vitest --version", "vitest run",
     {"package.json": PKG, "src/math.test.js": "import { describe, it, expect } from 'vitest';\ndescribe('math', () => {\n  it('multiplies', () => {\n    expect(2 * 3).toBe(7);\n  });\n});\n"}, node=True)
case("test_failure", "mocha-assert", "mocha", "mocha --version", "mocha",
     {"package.json": '{"name": "app", "version": "1.0.0"}\n', "test/array.spec.js": "const assert = require('assert');\ndescribe('Array', () => {\n  it('indexOf returns -1 when absent', () => {\n    assert.strictEqual([1, 2, 3].indexOf(4), 0);\n  });\n});\n"}, node=True)
case("test_failure", "node-test-runner", "node", "node --version", "node --test",
     {"test/str.test.mjs": "import test from 'node:test';\nimport assert from 'node:assert';\ntest('trim', () => {\n  assert.equal(' a '.trim(), 'a ');\n});\n"})
case("build_error", "node-syntax-error", "node", "node --version", "node build.js",
     {"build.js": "const config = {\n  entry: 'src/index.js',\n  output: ,\n};\n"})
case("deprecation", "tsc5-deprecated-option", "tsc", "tsc5 --version", "tsc5 -p .",
     {"tsconfig.json": '{"compilerOptions": {"target": "es3", "suppressImplicitAnyIndexErrors": true, "noEmit": true}, "include": ["src"]}\n', "src/a.ts": "export const a = 1;\n"})
case("deprecation", "node-throw-deprecation", "node", "node --version", "node --throw-deprecation app.js",
     {"app.js": "const b = new Buffer(10);\nconsole.log(b.length);\n"})
case("dependency_issue", "npm-ci-lock-out-of-sync", "npm", "npm --version", "npm ci --no-audit --no-fund",
     {"package.json": '{"name": "app", "version": "1.0.0", "dependencies": {"left-pad": "1.3.0"}}\n',
      "package-lock.json": '{"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": {"": {"name": "app", "version": "1.0.0"}}}\n'})
case("dependency_issue", "npm-eresolve-peer", "npm", "npm --version", "npm install --no-audit --no-fund",
     {"package.json": '{"name": "app", "version": "1.0.0", "dependencies": {"react": "18.2.0", "react-dom": "17.0.2"}}\n'}, timeout=240)
case("dependency_issue", "npm-etarget", "npm", "npm --version", "npm install --no-audit --no-fund left-pad@99.0.0", {"package.json": '{"name": "app", "version": "1.0.0"}\n'})
case("dependency_issue", "npm-e404", "npm", "npm --version", "npm install --no-audit --no-fund sentinel-no-such-package-xq7", {"package.json": '{"name": "app", "version": "1.0.0"}\n'})

# ---------------------------------------------------------------------------------------------
# Rust (each case its own target dir)
CARGO_TOML = '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
RV = "cargo --version"
case("linting", "clippy-needless-return", "clippy", "cargo clippy --version", "cargo clippy --quiet -- -D warnings",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn answer() -> i32 {\n    return 42;\n}\n"})
case("linting", "clippy-unused-variable", "clippy", "cargo clippy --version", "cargo clippy --all-targets -- -D warnings",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn f() -> usize {\n    let v = vec![1, 2, 3];\n    let unused = 5;\n    v.len()\n}\n"})
case("formatting", "cargo-fmt-check", "rustfmt", "rustfmt --version", "cargo fmt --check",
     {"Cargo.toml": CARGO_TOML, "src/main.rs": "fn main(){let x=1;println!(\"{}\",x);}\n"})
case("formatting", "cargo-fmt-check-lib", "rustfmt", "rustfmt --version", "cargo fmt --all -- --check",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub struct Config{pub name:String,pub retries:u32}\n\nimpl Config { pub fn new(name:&str)->Self{ Self{name:name.to_string(),retries:3} } }\n"})
case("build_error", "rustc-mismatched-types", "rustc", RV, "cargo build",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn port() -> u16 {\n    \"8080\"\n}\n"})
case("build_error", "rustc-cannot-find-value", "rustc", RV, "cargo check",
     {"Cargo.toml": CARGO_TOML, "src/main.rs": "fn main() {\n    println!(\"{}\", total_count);\n}\n"})
case("build_error", "rustc-borrow-error", "rustc", RV, "cargo build --release",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn f() -> usize {\n    let mut v = vec![1];\n    let first = &v[0];\n    v.push(2);\n    *first\n}\n"})
case("import_error", "rustc-unresolved-import", "rustc", RV, "cargo build",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "use crate::config::Settings;\n\npub fn f(_s: Settings) {}\n"})
case("import_error", "rustc-undeclared-type", "rustc", RV, "cargo test",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn counts() -> usize {\n    let m: HashMap<u8, u8> = HashMap::new();\n    m.len()\n}\n"})
case("import_error", "rustc-unresolved-crate", "rustc", RV, "cargo check",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "use serde::Serialize;\n\n#[derive(Serialize)]\npub struct A;\n"})
case("test_failure", "cargo-test-assert", "cargo-test", RV, "cargo test",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 { a - b }\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn adds() {\n        assert_eq!(add(2, 2), 4);\n    }\n\n    #[test]\n    fn zero() {\n        assert_eq!(add(0, 0), 0);\n    }\n}\n"})
case("deprecation", "rustc-deny-deprecated", "rustc", RV, "cargo build",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "#![deny(deprecated)]\n\n#[deprecated(since = \"0.2.0\", note = \"use connect_with instead\")]\npub fn connect() {}\n\npub fn run() {\n    connect();\n}\n"})
case("deprecation", "clippy-deprecated-warnings", "clippy", "cargo clippy --version", "cargo clippy -- -D warnings",
     {"Cargo.toml": CARGO_TOML, "src/lib.rs": "#[deprecated(note = \"use Client::builder()\")]\npub struct OldClient;\n\npub fn make() -> OldClient {\n    OldClient\n}\n"})
case("dependency_issue", "cargo-no-matching-version", "cargo", RV, "cargo generate-lockfile",
     {"Cargo.toml": CARGO_TOML + 'serde = "=99.0.0"\n', "src/lib.rs": ""})
case("dependency_issue", "cargo-locked-outdated", "cargo", RV, "cargo build --locked",
     {"Cargo.toml": CARGO_TOML + 'util = { path = "util" }\n', "src/lib.rs": "",
      "util/Cargo.toml": '[package]\nname = "util"\nversion = "0.1.0"\nedition = "2021"\n', "util/src/lib.rs": "",
      "Cargo.lock": "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n"})

# ---------------------------------------------------------------------------------------------
# Go
GOMOD = "module example.com/app\n\ngo 1.19\n"
GV = "go version"
GOENV = {"GOFLAGS": "-mod=mod", "GOPROXY": "off"}
case("formatting", "gofmt-list", "gofmt", GV, 'gofmt -l . && test -z "$(gofmt -l .)"',
     {"go.mod": GOMOD, "main.go": "package main\nimport \"fmt\"\nfunc main(){\nfmt.Println(\"x\")\n}\n"})
case("formatting", "gofmt-diff", "gofmt", GV, 'gofmt -d . ; test -z "$(gofmt -l .)"',
     {"go.mod": GOMOD, "util/util.go": "package util\n\nfunc Add(a int,b int) int {\n  return a+b\n}\n"})
case("linting", "go-vet-printf", "go-vet", GV, "go vet ./...",
     {"go.mod": GOMOD, "main.go": "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tname := \"x\"\n\tfmt.Printf(\"%d\\n\", name)\n}\n"})
case("linting", "go-vet-unreachable-copylock", "go-vet", GV, "go vet ./...",
     {"go.mod": GOMOD, "lock.go": "package app\n\nimport \"sync\"\n\ntype S struct{ mu sync.Mutex }\n\nfunc Use(s S) {}\n\nfunc F() int {\n\treturn 1\n\tpanic(\"x\")\n}\n"})
case("build_error", "go-build-undefined", "go", GV, "go build ./...",
     {"go.mod": GOMOD, "main.go": "package main\n\nfunc main() {\n\tstart()\n}\n"})
case("build_error", "go-build-unused-variable", "go", GV, "go build ./...",
     {"go.mod": GOMOD, "main.go": "package main\n\nimport \"os\"\n\nfunc main() {\n\tx := 1\n}\n"})
case("build_error", "go-test-build-failed", "go", GV, "go test ./...",
     {"go.mod": GOMOD, "calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n", "calc_test.go": "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(1, \"2\") != 3 {\n\t\tt.Fatal(\"x\")\n\t}\n}\n"})
case("test_failure", "go-test-fail", "go-test", GV, "go test ./...",
     {"go.mod": GOMOD, "calc.go": "package calc\n\nfunc Add(a, b int) int { return a - b }\n", "calc_test.go": "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif got := Add(1, 2); got != 3 {\n\t\tt.Errorf(\"Add(1, 2) = %d, want 3\", got)\n\t}\n}\n"})
case("test_failure", "go-test-verbose-panic", "go-test", GV, "go test -v ./...",
     {"go.mod": GOMOD, "m.go": "package m\n\nfunc Get(xs []int) int { return xs[3] }\n", "m_test.go": "package m\n\nimport \"testing\"\n\nfunc TestGet(t *testing.T) {\n\tif Get([]int{1}) != 1 {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n"})
case("import_error", "go-no-required-module", "go", GV, "go build ./...",
     {"go.mod": GOMOD, "main.go": "package main\n\nimport \"github.com/pkg/errors\"\n\nfunc main() { _ = errors.New(\"x\") }\n"}, env={"GOPROXY": "off"})
case("import_error", "go-package-not-in-std", "go", GV, "go build ./...",
     {"go.mod": GOMOD, "main.go": "package main\n\nimport \"encoding/yaml\"\n\nfunc main() { _ = yaml.Marshal }\n"})
case("dependency_issue", "go-missing-go-sum", "go", GV, "go build ./...",
     {"go.mod": GOMOD + "\nrequire github.com/pkg/errors v0.9.1\n", "main.go": "package main\n\nimport \"github.com/pkg/errors\"\n\nfunc main() { _ = errors.New(\"x\") }\n"}, env={"GOPROXY": "off", "GOFLAGS": "-mod=readonly"})
case("dependency_issue", "go-mod-tidy-needed", "go", GV, "go build ./...",
     {"go.mod": GOMOD + "\nrequire github.com/pkg/errors v0.9.1\n", "go.sum": "", "main.go": "package main\n\nfunc main() {}\n", "x.go": "package main\n\nimport \"golang.org/x/text/language\"\n\nvar _ = language.English\n"}, env={"GOPROXY": "off", "GOFLAGS": "-mod=readonly"})

# ---------------------------------------------------------------------------------------------
# JVM (javac is offline-capable)
JV = "javac -version"
case("build_error", "javac-cannot-find-symbol", "javac", JV, "javac -d out src/App.java",
     {"src/App.java": "public class App {\n    public static void main(String[] args) {\n        System.out.println(greeting());\n    }\n}\n"})
case("build_error", "javac-incompatible-types", "javac", JV, "javac -d out src/com/example/Port.java",
     {"src/com/example/Port.java": "package com.example;\n\npublic class Port {\n    int port = \"8080\";\n}\n"})
case("build_error", "javac-missing-semicolon", "javac", JV, "javac -d build/classes Main.java",
     {"Main.java": "public class Main {\n    public static void main(String[] a) {\n        int x = 1\n    }\n}\n"})
case("import_error", "javac-package-does-not-exist", "javac", JV, "javac -d out src/AppTest.java",
     {"src/AppTest.java": "import org.junit.jupiter.api.Test;\nimport static org.junit.jupiter.api.Assertions.assertEquals;\n\nclass AppTest {\n    @Test\n    void adds() { assertEquals(2, 1 + 1); }\n}\n"})
case("deprecation", "javac-removal-werror", "javac", JV, "javac -Xlint:all -Werror -d out Box.java",
     {"Box.java": "public class Box {\n    Integer value = new Integer(5);\n}\n"})
case("deprecation", "javac-deprecation-werror", "javac", JV, "javac -Xlint:deprecation -Werror -d out Dates.java",
     {"Dates.java": "import java.util.Date;\n\npublic class Dates {\n    int year(Date d) { return d.getYear(); }\n}\n"})
case("test_failure", "java-assertion-error", "java", "java -version", "javac -d out CalcTest.java && java -ea -cp out CalcTest",
     {"CalcTest.java": "public class CalcTest {\n    static int add(int a, int b) { return a - b; }\n    public static void main(String[] args) {\n        assert add(2, 2) == 4 : \"add(2, 2) should be 4\";\n        System.out.println(\"ok\");\n    }\n}\n"})

# ---------------------------------------------------------------------------------------------
# Ruby
RBV = "ruby --version"
case("linting", "rubocop-style", "rubocop", "rubocop --version", "rubocop app.rb",
     {"app.rb": "# frozen_string_literal: true\n\ndef Greeting(name)\n  return \"hello #{name}\" if name != nil\nend\n"})
case("formatting", "rubocop-layout", "rubocop", "rubocop --version", "rubocop --only Layout lib",
     {"lib/calc.rb": "# frozen_string_literal: true\n\nclass Calc\n    def add(a,b)\n      a+b\n    end\nend\n"})
case("test_failure", "rspec-failure", "rspec", "rspec --version", "rspec",
     {"spec/calc_spec.rb": "def add(a, b) = a - b\n\nRSpec.describe 'add' do\n  it 'adds two numbers' do\n    expect(add(2, 3)).to eq(5)\n  end\nend\n"})
case("test_failure", "minitest-failure", "minitest", RBV, "ruby test/test_calc.rb",
     {"test/test_calc.rb": "require 'minitest/autorun'\n\nclass TestCalc < Minitest::Test\n  def test_add\n    assert_equal 5, 2 - 3\n  end\nend\n"})
case("import_error", "ruby-load-error", "ruby", RBV, "ruby app.rb",
     {"app.rb": "require 'nokogiri'\n\nputs Nokogiri::VERSION\n"})
case("build_error", "ruby-syntax-error", "ruby", RBV, "ruby -c lib/app.rb",
     {"lib/app.rb": "def run(x\n  puts x\nend\n"})

# ---------------------------------------------------------------------------------------------
# C / C++ / CMake
CCV = "gcc --version"
case("build_error", "gcc-undeclared", "gcc", CCV, "gcc -Wall -c src/main.c -o main.o",
     {"src/main.c": "int main(void) {\n    return count;\n}\n"})
case("build_error", "gpp-type-error", "g++", "g++ --version", "g++ -std=c++17 -c src/app.cpp",
     {"src/app.cpp": "#include <string>\nint main() {\n    std::string s = 42.5;\n    int n = s;\n    return n;\n}\n"})
case("build_error", "gcc-linker-undefined-reference", "ld", CCV, "gcc -o app main.c",
     {"main.c": "void connect_db(void);\nint main(void) { connect_db(); return 0; }\n"})
case("build_error", "clang-error", "clang", "clang --version", "clang -c lib.c",
     {"lib.c": "struct point { int x; };\nint f(struct point p) { return p.y; }\n"})
case("build_error", "cmake-missing-source", "cmake", "cmake --version", "cmake -S . -B build",
     {"CMakeLists.txt": "cmake_minimum_required(VERSION 3.16)\nproject(app C)\nadd_executable(app src/main.c src/missing.c)\n", "src/main.c": "int main(void){return 0;}\n"})
case("import_error", "gcc-missing-header", "gcc", CCV, "gcc -c src/net.c",
     {"src/net.c": "#include <curl/curl.h>\nint f(void) { return 0; }\n"})
case("import_error", "clang-missing-header", "clang", "clang --version", "clang++ -c src/app.cpp",
     {"src/app.cpp": "#include \"config/generated.h\"\nint main() { return 0; }\n"})
case("deprecation", "gcc-werror-deprecated", "gcc", CCV, "gcc -Werror=deprecated-declarations -c api.c",
     {"api.c": "__attribute__((deprecated(\"use open_v2\"))) int open_v1(void);\nint f(void) { return open_v1(); }\n"})
case("deprecation", "clang-werror-deprecated", "clang", "clang --version", "clang -Wall -Werror -c api.c",
     {"api.c": "__attribute__((deprecated)) int legacy(void);\nint f(void) { return legacy(); }\n"})
case("dependency_issue", "cmake-find-package-config", "cmake", "cmake --version", "cmake -S . -B build",
     {"CMakeLists.txt": "cmake_minimum_required(VERSION 3.16)\nproject(app CXX)\nfind_package(fmt 10 REQUIRED)\n"})
case("dependency_issue", "cmake-find-boost", "cmake", "cmake --version", "cmake -S . -B build",
     {"CMakeLists.txt": "cmake_minimum_required(VERSION 3.16)\nproject(app CXX)\nfind_package(Boost 1.80 REQUIRED COMPONENTS filesystem)\n"})
case("dependency_issue", "pkg-config-missing", "pkg-config", "pkg-config --version", "pkg-config --cflags --libs gtk4",
     {})
case("test_failure", "ctest-failure", "ctest", "ctest --version", "cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug > /dev/null && cmake --build build > /dev/null && cd build && ctest --output-on-failure",
     {"CMakeLists.txt": "cmake_minimum_required(VERSION 3.16)\nproject(app C)\nenable_testing()\nadd_executable(t test.c)\nadd_test(NAME parse_test COMMAND t)\n", "test.c": "#include <stdio.h>\nint main(void){ printf(\"parse: expected 3, got 2\\n\"); return 1; }\n"})

# ---------------------------------------------------------------------------------------------
# Shell
SCV = "shellcheck --version | sed -n 2p"
case("linting", "shellcheck-quoting", "shellcheck", SCV, "shellcheck deploy.sh",
     {"deploy.sh": "#!/bin/bash\ncp $1 /srv/app/\nfor f in $(ls *.txt); do echo $f; done\n"})
case("linting", "shellcheck-gcc-format", "shellcheck", SCV, "shellcheck -f gcc scripts/*.sh",
     {"scripts/build.sh": "#!/bin/sh\nif [ $VERSION == \"1\" ]; then\n  echo ok\nfi\n"})

# ---------------------------------------------------------------------------------------------
# Infrastructure (real failures)
case("infrastructure", "pip-dns-failure", "pip", "python3 -m pip --version",
     "python3 -m pip install --disable-pip-version-check --index-url https://nonexistent.invalid/simple --retries 1 --timeout 5 requests")
case("infrastructure", "curl-dns-failure", "curl", "curl --version", "curl -sS -fL https://nonexistent.invalid/releases/tool.tar.gz -o tool.tar.gz")
case("infrastructure", "curl-read-timeout", "curl", "curl --version", "curl -sS --max-time 3 http://127.0.0.1:{PORTBH}/health")
case("infrastructure", "git-clone-dns-failure", "git", "git --version", "git clone https://nonexistent.invalid/org/repo.git")
case("infrastructure", "npm-registry-dns-failure", "npm", "npm --version",
     "npm install --no-audit --no-fund --fetch-retries=0 --registry http://nonexistent.invalid/ left-pad",
     {"package.json": '{"name": "app", "version": "1.0.0"}\n'})
case("infrastructure", "go-proxy-dns-failure", "go", GV, "go mod download github.com/pkg/errors@v0.9.1",
     {"go.mod": GOMOD}, env={"GOPROXY": "http://nonexistent.invalid", "GOFLAGS": "-mod=mod"})
case("infrastructure", "dd-no-space-left", "dd", "dd --version", "dd if=/dev/zero of=/dev/full bs=1M count=1")
case("infrastructure", "python-no-space-left", "python", PY,
     "python3 -c \"open('/dev/full', 'w').write('x' * 10000)\"")
case("infrastructure", "cp-no-space-left", "cp", "cp --version", "head -c 100000 /dev/zero > artifact.bin && cp artifact.bin /dev/full")
case("infrastructure", "node-heap-out-of-memory", "node", "node --version",
     "node --max-old-space-size=24 -e \"const a = []; for (;;) a.push(new Array(100000).fill('x'));\"", timeout=120)
case("infrastructure", "python-memory-error-ulimit", "python", PY,
     "ulimit -v 300000; python3 -c \"data = bytearray(2 * 1024 ** 3)\"")
case("infrastructure", "process-killed-sigkill", "bash", "bash --version",
     "python3 -c \"import os, signal; print('building index...', flush=True); os.kill(os.getpid(), signal.SIGKILL)\"; exit $?")
case("infrastructure", "npm-registry-503", "npm", "npm --version",
     "npm install --no-audit --no-fund --fetch-retries=0 --registry http://127.0.0.1:{PORT503}/ left-pad",
     {"package.json": '{"name": "app", "version": "1.0.0"}\n'})
case("infrastructure", "npm-registry-429", "npm", "npm --version",
     "npm install --no-audit --no-fund --fetch-retries=0 --registry http://127.0.0.1:{PORT429}/ left-pad",
     {"package.json": '{"name": "app", "version": "1.0.0"}\n'})
case("infrastructure", "pip-index-503", "pip", "python3 -m pip --version",
     "python3 -m pip install --disable-pip-version-check --retries 0 http://127.0.0.1:{PORT503}/packages/requests-2.31.0-py3-none-any.whl")
case("infrastructure", "curl-registry-429", "curl", "curl --version",
     "curl -sS -f http://127.0.0.1:{PORT429}/v2/library/node/manifests/20")

# Documented formats (messages that cannot be produced here), verbatim.
documented("infrastructure", "github-runner-lost-communication", "github-actions",
           "https://docs.github.com/en/actions/hosting-your-own-runners (runner lost communication)",
           "Run npm test\n> app@1.0.0 test\n> jest --ci\n\nPASS src/a.test.js\n"
           "Error: The self-hosted runner: build-runner-7 lost communication with the server. Verify the machine is running and has a healthy network connection. Anything in your workflow that terminates the runner process, starves it for CPU/Memory, or blocks its network access can cause this error.\n")
documented("infrastructure", "github-exit-137-oom", "github-actions",
           "GitHub Actions step failure message format; 137 = SIGKILL (OOM killer)",
           "Run cargo build --release\n   Compiling serde v1.0.197\n   Compiling tokio v1.36.0\n   Compiling app v0.1.0 (/home/runner/work/app/app)\n"
           "error: could not compile `app` (lib)\n\nCaused by:\n  process didn't exit successfully: `rustc --crate-name app` (signal: 9, SIGKILL: kill)\n"
           "Error: Process completed with exit code 137.\n")
documented("infrastructure", "github-operation-canceled", "github-actions",
           "GitHub Actions cancellation message",
           "Run python -m pytest\n============================= test session starts ==============================\ncollected 312 items\n\n"
           "tests/test_api.py ........................................\nError: The operation was canceled.\n")
documented("infrastructure", "github-max-execution-time", "github-actions",
           "GitHub Actions job timeout message",
           "Run ./gradlew integrationTest\n> Task :integrationTest\n"
           "Error: The job running on runner GitHub Actions 12 has exceeded the maximum execution time of 360 minutes.\n")
documented("infrastructure", "gitlab-job-timeout", "gitlab-ci",
           "https://docs.gitlab.com/ee/ci/runners/ (job execution timeout)",
           "$ make test\ngo test ./...\nok  \texample.com/app/api\t0.412s\n"
           "ERROR: Job failed: execution took longer than 1h0m0s seconds\n")
documented("infrastructure", "gitlab-system-failure", "gitlab-ci",
           "GitLab Runner system failure message",
           "Running with gitlab-runner 16.9.1 (782c6ecb)\n  on docker-runner-3 xS7Kd9pQ, system ID: s_8a9b2c3d4e5f\nPreparing the \"docker\" executor\n"
           "ERROR: Job failed (system failure): Error response from daemon: Conflict. The container name is already in use by container. (docker.go:741:0s)\n")
documented("infrastructure", "docker-pull-rate-limit", "docker",
           "https://docs.docker.com/docker-hub/download-rate-limit/",
           "Run docker pull node:20\nError response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limits\n"
           "Error: Process completed with exit code 1.\n")
documented("infrastructure", "docker-pull-access-denied", "docker",
           "Docker Engine pull error format",
           "Unable to find image 'registry.example.com/team/builder:3.2' locally\n"
           "docker: Error response from daemon: pull access denied for registry.example.com/team/builder, repository does not exist or may require 'docker login': denied: requested access to the resource is denied.\nSee 'docker run --help'.\n")
documented("infrastructure", "kubernetes-image-pull-backoff", "kubernetes",
           "https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff",
           "Waiting for pod ci/runner-x7k2p-project-42-concurrent-0 to be running, status is Pending\n"
           "\tContainer \"build\" is waiting with reason \"ErrImagePull\", message: \"rpc error: code = NotFound desc = failed to pull and unpack image \\\"docker.io/library/python:3.13-slim-bookworm-x\\\": failed to resolve reference: not found\"\n"
           "ERROR: Job failed (system failure): prepare environment: waiting for pod running: pulling image \"python:3.13-slim-bookworm-x\": image pull failed: Back-off pulling image\n")
documented("infrastructure", "kernel-oom-killer", "kernel",
           "Linux OOM killer kernel log format (dmesg) as surfaced by runners",
           "   Compiling llvm-sys v170.0.1\n"
           "Out of memory: Killed process 23817 (cc1plus) total-vm:3281724kB, anon-rss:2962132kB, file-rss:0kB, shmem-rss:0kB, UID:1001 pgtables:6244kB oom_score_adj:0\n"
           "c++: fatal error: Killed signal terminated program cc1plus\ncompilation terminated.\n")

# ---------------------------------------------------------------------------------------------
# Unknown: failures with nothing recognisable in the log.
case("unknown", "false-after-echo", "bash", "bash --version", "echo 'Deploying build 4812 to staging...' && false")
case("unknown", "python-sys-exit-message", "python", PY, "python3 -c \"import sys; sys.exit('release tag v1.4.2 already exists on the remote')\"")
case("unknown", "ls-missing-dir", "ls", "ls --version", "ls dist/")
case("unknown", "grep-silent", "grep", "grep --version", "grep -q 'RELEASE_NOTES' CHANGELOG.md", {"CHANGELOG.md": "# Changes\n- fix\n"})
case("unknown", "test-empty-var", "bash", "bash --version", "test -n \"$DEPLOY_ENV\" || { echo 'DEPLOY_ENV must be set'; exit 1; }")
case("unknown", "python-runtime-error", "python", PY, "python3 scripts/release.py",
     {"scripts/release.py": "def main():\n    state = {'phase': 'draft'}\n    if state['phase'] != 'ready':\n        raise RuntimeError('release is not ready: phase=' + state['phase'])\n\n\nmain()\n"})
case("unknown", "node-thrown-error", "node", "node --version", "node scripts/publish.js",
     {"scripts/publish.js": "function publish(v) {\n  throw new Error(`version ${v} was already published`);\n}\npublish('2.3.1');\n"})
case("unknown", "tar-missing-archive", "tar", "tar --version", "tar xzf artifacts/site.tgz -C public")
case("unknown", "java-illegal-state", "java", "java -version", "javac -d out Main.java && java -cp out Main",
     {"Main.java": "public class Main {\n    public static void main(String[] a) {\n        throw new IllegalStateException(\"migration 0042 left the schema dirty\");\n    }\n}\n"})
case("unknown", "exit-code-only", "bash", "bash --version", "echo 'Uploading coverage report' && echo 'done' && exit 3")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    ap.add_argument("--node-modules", default=os.environ.get("CORPUS_NODE_MODULES"))
    args = ap.parse_args()
    port503 = status_server(503)
    port429 = status_server(429)
    portbh = blackhole_server()
    index_path = OUT / "index.json"
    index = {}
    if index_path.exists():
        index = {e["file"]: e for e in json.loads(index_path.read_text())}
    versions = {}
    for c in CASES:
        rel = f"{c['cls']}/{c['name']}.log"
        if args.only and not any(o in rel for o in args.only.split(",")):
            continue
        dest = OUT / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if "text" in c:
            dest.write_text(c["text"])
            index[rel] = {"file": rel, "class": c["cls"], "tool": c["tool"], "source": "documented", "reference": c["source"]}
            print(f"{rel}: documented")
            continue
        d = tempfile.mkdtemp(prefix="corpus-")
        try:
            files = dict(c["files"])
            wheels = files.pop("__wheels__", None)
            write_files(d, files)
            if wheels:
                (pathlib.Path(d) / "wheels").mkdir()
                for name, ver, req in wheels:
                    wheel(pathlib.Path(d) / "wheels", name, ver, req)
            if c["node"] and args.node_modules:
                os.symlink(args.node_modules, pathlib.Path(d) / "node_modules")
            cmd = c["cmd"].replace("{PORT503}", str(port503)).replace("{PORT429}", str(port429)).replace("{PORTBH}", str(portbh))
            env = dict(c["env"])
            env.setdefault("CARGO_TARGET_DIR", os.path.join(d, "target"))
            env.setdefault("GOCACHE", "/tmp/corpus-gocache")
            env.setdefault("GOPATH", "/tmp/corpus-gopath")
            code, out = run(cmd, d, env, c["timeout"])
            if code == 0:
                print(f"!! {rel}: command succeeded; not recorded", file=sys.stderr)
                continue
            out = out.replace(os.path.realpath(d), RUNNER_DIR).replace(d, RUNNER_DIR)
            shown = cmd.replace(str(port503), "8081").replace(str(port429), "8082").replace(str(portbh), "8083")
            out = out.replace(f"127.0.0.1:{port503}", "127.0.0.1:8081").replace(f"127.0.0.1:{port429}", "127.0.0.1:8082").replace(f"127.0.0.1:{portbh}", "127.0.0.1:8083")
            for real, shown_port in ((port503, 8081), (port429, 8082), (portbh, 8083)):
                out = out.replace(f"port={real}", f"port={shown_port}")
            out = out.replace(f"port {port503}", "port 8081").replace(f"port {port429}", "port 8082").replace(f"port {portbh}", "port 8083")
            dest.write_text(f"$ {shown}\n{out}")
            vcmd = c["version"]
            if vcmd not in versions:
                versions[vcmd] = version_of(vcmd)
            index[rel] = {"file": rel, "class": c["cls"], "tool": c["tool"], "version": versions[vcmd],
                          "command": shown, "exit_code": code, "source": "real"}
            print(f"{rel}: exit {code}, {len(out)} bytes")
        finally:
            shutil.rmtree(d, ignore_errors=True)
    entries = sorted(index.values(), key=lambda e: e["file"])
    index_path.write_text(json.dumps(entries, indent=1) + "\n")
    print(f"{len(entries)} cases in {index_path}")


if __name__ == "__main__":
    main()
