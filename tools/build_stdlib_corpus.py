"""Build mpq/_examples/data/stdlib_sentences.txt: first sentences of Python stdlib docstrings."""

import importlib
import inspect
import random
import re

MODULES = [
    "os",
    "os.path",
    "shutil",
    "pathlib",
    "json",
    "csv",
    "re",
    "string",
    "textwrap",
    "collections",
    "itertools",
    "functools",
    "operator",
    "datetime",
    "calendar",
    "time",
    "math",
    "statistics",
    "random",
    "decimal",
    "fractions",
    "heapq",
    "bisect",
    "array",
    "copy",
    "pprint",
    "enum",
    "typing",
    "dataclasses",
    "abc",
    "contextlib",
    "io",
    "tempfile",
    "glob",
    "fnmatch",
    "zipfile",
    "tarfile",
    "gzip",
    "bz2",
    "lzma",
    "hashlib",
    "hmac",
    "secrets",
    "base64",
    "binascii",
    "struct",
    "codecs",
    "unicodedata",
    "locale",
    "gettext",
    "logging",
    "argparse",
    "getopt",
    "subprocess",
    "threading",
    "queue",
    "sched",
    "socket",
    "ssl",
    "select",
    "selectors",
    "signal",
    "email",
    "email.message",
    "mailbox",
    "mimetypes",
    "html",
    "html.parser",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "urllib.parse",
    "urllib.request",
    "http.client",
    "http.server",
    "http.cookies",
    "ftplib",
    "smtplib",
    "uuid",
    "ipaddress",
    "wave",
    "colorsys",
    "sqlite3",
    "pickle",
    "shelve",
    "dbm",
    "zlib",
    "configparser",
    "tomllib",
    "netrc",
    "platform",
    "sysconfig",
    "inspect",
    "dis",
    "ast",
    "tokenize",
    "keyword",
    "traceback",
    "warnings",
    "weakref",
    "gc",
    "types",
    "unittest",
    "doctest",
    "pdb",
    "timeit",
    "cProfile",
    "pstats",
    "difflib",
    "filecmp",
    "linecache",
    "graphlib",
    "asyncio",
    "concurrent.futures",
    "multiprocessing",
    "importlib",
    "pkgutil",
    "zoneinfo",
    "numbers",
    "cmath",
    "stat",
    "shlex",
    "optparse",
    "turtle",
    "string.templatelib",
]
sentences = set()


def first_sentence(doc):
    doc = " ".join(doc.split())
    m = re.match(r"(.+?[.!?])(\s|$)", doc)
    return m.group(1) if m else None


for name in MODULES:
    try:
        mod = importlib.import_module(name)
    except Exception:
        continue
    objs = [mod] + [getattr(mod, a) for a in dir(mod) if not a.startswith("_")]
    for obj in list(objs):
        if inspect.isclass(obj):
            objs += [v for k, v in vars(obj).items() if not k.startswith("_") and callable(v)]
    for obj in objs:
        doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)) else None
        if not doc:
            continue
        s = first_sentence(doc)
        if not s or not (6 <= len(s.split()) <= 40) or not s[0].isupper():
            continue
        if any(ch in s for ch in "(){}[]<>=>`|\\@#$%^*~"):
            continue
        sentences.add(s)
out = sorted(sentences)
random.Random(0).shuffle(out)
out = out[:1200]
open("mpq/_examples/data/stdlib_sentences.txt", "w").write(
    "# First sentences of Python 3.11 standard-library docstrings (PSF licence), one per line;\n"
    "# built by mpq's maintainers once, shipped so the MiniLM example needs no network.\n" + "\n".join(out) + "\n"
)
print(len(sentences), len(out))
