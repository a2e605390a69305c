"""docs/pytorch.md ("Coming from PyTorch") tells the truth: every name it lists as existing
exists where it says, and every name it lists as absent raises an AttributeError that names
what fastnn has instead."""

import pathlib
import re

import pytest

import fastnn as fnn
import fastnn.nn.functional as F
import fastnn.utils.data

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "pytorch.md"
SECTION = PAGE.read_text(encoding="utf-8")

#: Where each "What exists" bullet's names live, keyed by the bullet's first code span.
OWNERS = {
    "fnn.Tensor": fnn.Tensor,
    "fnn": fnn,
    "fnn.nn.functional": F,
    "fnn.nn": fnn.nn,
    "fnn.nn.Module": fnn.nn.Module,
    "fnn.optim": fnn.optim,
    "fnn.optim.lr_scheduler": fnn.optim.lr_scheduler,
    "fnn.utils.data": fastnn.utils.data,
    "fnn.autograd": fnn.autograd,
    "fnn.nn.init": fnn.nn.init,
    "fnn.nn.utils": fnn.nn.utils,
    "fnn.Generator": fnn.Generator,
}


def _bullets(block: str) -> list[tuple[str, list[str]]]:
    """(owner, names) per bullet: the first code span names the owner, the code spans after
    the colon are the names."""
    out = []
    for bullet in re.split(r"\n- ", "\n" + block)[1:]:
        owner = re.match(r"`([\w.]+)`", bullet).group(1)
        names = re.findall(r"`([\w.]+)`", bullet.split(":", 1)[1])
        out.append((owner, names))
    return out


EXISTS = _bullets(SECTION[SECTION.index("What exists"):SECTION.index("What differs")]
                  .split(":", 1)[1])
ABSENT = re.findall(r"`(\w+)`", SECTION[SECTION.index("What is absent"):].split(":", 1)[1]
                    .split("(`torch.save`")[0])


def test_the_section_lists_names():
    assert len(EXISTS) == len(OWNERS) and sum(len(n) for _, n in EXISTS) > 250
    assert len(ABSENT) >= 10


@pytest.mark.parametrize("owner, names", EXISTS, ids=[o for o, _ in EXISTS])
def test_every_listed_name_exists(owner, names):
    obj = OWNERS[owner]
    missing = [n for n in names if not hasattr(obj, n)]
    assert not missing, f"docs/pytorch.md lists {missing} under {owner}, which lacks them"
    if owner == "fnn.nn":  # "also at fnn."
        assert all(getattr(fnn, n) is getattr(fnn.nn, n) for n in names)


@pytest.mark.parametrize("name", ABSENT)
def test_every_absent_name_raises_with_a_hint(name):
    owners = [fnn] + ([fnn.nn] if name[0].isupper() else [])
    for obj in owners:
        with pytest.raises(AttributeError, match=f"has no '{name}': .*"):
            getattr(obj, name)


def test_torch_paths_of_a_ported_script():
    """``import fastnn as torch``: the paths a PyTorch script reaches for."""
    import fastnn as torch

    assert torch.utils.data.DataLoader is fastnn.utils.data.DataLoader
    assert torch.nn.init.orthogonal_ is fnn.init.orthogonal_
    assert callable(torch.nn.utils.clip_grad_norm_) and callable(torch.nn.utils.clip_grad_value_)
    assert torch.optim.lr_scheduler.StepLR and torch.autograd.grad and torch.no_grad
    assert isinstance(torch.Generator().manual_seed(1), torch.Generator)
    assert torch.cuda.is_available() is False and torch.device("cpu") == "cpu"
    from fastnn.data import DataLoader, TensorDataset  # the first failing line

    assert TensorDataset is fastnn.utils.data.TensorDataset
    loader = DataLoader(TensorDataset(torch.randn(5, 2)), batch_size=2)
    assert isinstance(loader, fastnn.utils.data.DataLoader)
