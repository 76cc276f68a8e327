"""The scripts in benchmarks/ (not a package) loaded as modules, for the tests that call their ``main``."""
import importlib.util
from pathlib import Path
from types import ModuleType


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module, e.g. ``load_benchmark("bench_backends").main([...])``."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
