import pytest

from gtahuman.registry import Registry


def make_registry() -> Registry:
    reg: Registry = Registry("sampler")

    @reg.register("uniform")
    def uniform(size: int = 4, seed: int = 0) -> tuple[int, int]:
        return size, seed

    @reg.register()
    def balanced(size: int = 8) -> int:
        return size

    return reg


def test_build_passes_kwargs_and_drops_none():
    reg = make_registry()
    assert reg.build("uniform", size=7, seed=None) == (7, 0)  # None falls back to the default
    assert reg.build("balanced") == 8  # registered under the function name


def test_duplicate_name_refused():
    reg = make_registry()
    with pytest.raises(KeyError, match="already registered"):
        reg.register("uniform")(lambda: None)


def test_unknown_name_lists_valid_ones():
    reg = make_registry()
    with pytest.raises(KeyError) as err:
        reg.build("unifrom")
    msg = str(err.value)
    assert "unknown sampler 'unifrom'" in msg
    assert "balanced, uniform" in msg


def test_names_sorted_and_membership():
    reg = make_registry()
    assert reg.names() == ["balanced", "uniform"]
    assert "uniform" in reg and "x" not in reg and len(reg) == 2
