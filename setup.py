"""The data folders (profiles/, cloudinit/, images/) stay at the top of the checkout, where
people edit them; a build copies them into the package as vmbuilder/_data/, so a wheel
finds them with importlib.resources wherever it is installed."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("profiles", "cloudinit", "images")
SUFFIXES = (".yaml", ".j2", ".py", ".sh")   # .py, .sh: scripts a role ships into its guests


class BuildWithData(build_py):
    def run(self):
        super().run()
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "vmbuilder" / "_data"
        for name in DATA:
            dest = target / name
            if dest.exists():
                shutil.rmtree(dest)
            for src in sorted((here / name).rglob("*")):
                if src.is_file() and src.suffix in SUFFIXES:
                    out = dest / src.relative_to(here / name)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, out)


setup(cmdclass={"build_py": BuildWithData})
