"""The PyTorch layer against real Hugging Face and timm models (tiny, randomly initialised
from configs, nothing downloaded) and against hostile producers and models: ViTMAE's
masking, models without a class token, loaders and models that reuse their buffers,
per-submodule training flags, failures and interrupts midway."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import labelranker_fast as lrf  # noqa: E402
from labelranker_fast.torch import extract_and_rank  # noqa: E402

N, C = 96, 4


def images_and_labels(shape=(3, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), N // C)
    rng.shuffle(labels)
    x = rng.standard_normal((N, *shape)).astype(np.float32)
    x += (
        0.5
        * labels.reshape(-1, *([1] * len(shape)))
        * np.linspace(-1, 1, shape[-1], dtype=np.float32)
    )
    return torch.from_numpy(x), torch.from_numpy(labels)


def loader_of(x, y, batch_size=16):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def run(model, loader, **kw):
    kw = {"num_classes": C, "device": "cpu", "progress": False, "shrinkage": "oas", **kw}
    return extract_and_rank(model, loader, return_accumulator=True, **kw)


def assert_matches_features(ranking, acc, feats, labels):
    """The extraction's statistics are those of ``feats`` (float64 numpy, computed
    independently): class means to float32 rounding, the same order."""
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels)
    means = np.stack([feats[labels == k].mean(0) for k in range(C)])
    scale = np.abs(means).max()
    np.testing.assert_allclose(acc.class_means, means, rtol=1e-5, atol=1e-5 * scale)
    want = lrf.rank_labels(feats, labels, shrinkage="oas")
    np.testing.assert_array_equal(ranking.order, want.order)


def assert_same_state(a, b):
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]), err_msg=k)


def no_feeder_threads(grace=5.0):
    """True when no labelranker thread is alive: the feeder (joined before the call
    returns) at once, the stream's prefetch thread (ending on its own) within ``grace``."""

    def alive(prefix):
        return [t for t in threading.enumerate() if t.name.startswith(prefix)]

    if alive("labelranker-feeder"):
        return False
    deadline = time.monotonic() + grace
    while alive("labelranker"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def flags(model):
    return [m.training for m in model.modules()]


def hooks(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


# ------------------------------------------------------------- ViTMAE
def tiny_vitmae(**kw):
    from transformers import ViTMAEConfig, ViTMAEModel

    torch.manual_seed(0)
    config = ViTMAEConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        **kw,
    )
    return ViTMAEModel(config).eval()


def vitmae_tokens(model, x):
    """Every token in natural order (CLS first), computed by hand from the model's parts
    without its masking code: patch embeddings + positions, CLS prepended, the layers,
    the final norm."""
    emb = model.embeddings
    with torch.no_grad():
        patches = emb.patch_embeddings(x) + emb.position_embeddings[:, 1:]
        cls = (emb.cls_token + emb.position_embeddings[:, :1]).expand(len(x), -1, -1)
        h = torch.cat([cls, patches], 1)
        for layer in model.layers:
            h = layer(h, None)
        return model.layernorm(h).double().numpy()


@pytest.mark.parametrize("pooling", ["avg", "max", "avgmax", "cls", "first-patch", "last-patch"])
def test_vitmae_features_use_every_patch_in_natural_order(pooling):
    model = tiny_vitmae()
    x, y = images_and_labels()
    tokens = vitmae_tokens(model, x)
    assert tokens.shape[1] == 1 + 16  # a 32x32 image in 8x8 patches, and the CLS token
    patches = tokens[:, 1:]  # avg, max, avgmax leave the CLS token out
    want = {
        "avg": patches.mean(1),
        "max": patches.max(1),
        "avgmax": 0.5 * (patches.mean(1) + patches.max(1)),
        "cls": tokens[:, 0],
        "first-patch": tokens[:, 1],
        "last-patch": tokens[:, -1],
    }[pooling]
    callables = {
        "first-patch": lambda out: out.last_hidden_state[:, 1],
        "last-patch": lambda out: out.last_hidden_state[:, -1],
    }
    ranking, acc = run(model, loader_of(x, y), pooling=callables.get(pooling, pooling))
    assert_matches_features(ranking, acc, want, y.numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_vitmae_extraction_is_deterministic(dtype):
    """Also in half precision (float32 images cast to the model's dtype)."""
    model = tiny_vitmae().to(dtype)
    x, y = images_and_labels()
    r1, a1 = run(model, loader_of(x, y))
    r2, a2 = run(model, loader_of(x, y))
    assert_same_state(a1, a2)
    assert r1 == r2
    assert model.config.mask_ratio == 0.75 and next(model.parameters()).dtype == dtype
    patches = vitmae_tokens(model, x.to(dtype))[:, 1:].mean(1)
    means = np.stack([patches[y.numpy() == k].mean(0) for k in range(C)])
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # float16 rounding of the features
    np.testing.assert_allclose(a1.class_means, means, rtol=tol, atol=tol * np.abs(means).max())


def test_vitmae_is_restored_after_a_call_a_failure_and_an_interrupt():
    model = tiny_vitmae(mask_ratio=0.6)
    model.train()
    model.layers[0].eval()  # a mixed state, kept exactly
    before = flags(model)
    x, y = images_and_labels()
    run(model, loader_of(x, y))
    assert model.config.mask_ratio == 0.6 and model.embeddings.config.mask_ratio == 0.6
    assert flags(model) == before and hooks(model) == 0

    def failing_pooling(out):
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("pooling failed on batch 3")
        return out.last_hidden_state[:, 0]

    seen = []
    with pytest.raises(RuntimeError, match="batch 3"):
        run(model, loader_of(x, y), pooling=failing_pooling)
    assert model.config.mask_ratio == 0.6 and flags(model) == before and hooks(model) == 0
    assert no_feeder_threads()

    def interrupted():
        for i, batch in enumerate(loader_of(x, y)):
            if i == 2:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        run(model, interrupted())
    assert model.config.mask_ratio == 0.6 and flags(model) == before and hooks(model) == 0
    assert no_feeder_threads()
    # and the model masks again as before, outside the extraction
    with torch.no_grad():
        assert model.eval()(pixel_values=x[:2]).last_hidden_state.shape[1] == 1 + int(16 * 0.4)


def test_vitmae_masking_that_cannot_be_turned_off_is_refused():
    """A masking step that ignores the configuration (as a future version could) is
    detected on the tokens it returns, not silently pooled."""
    model = tiny_vitmae()
    emb = model.embeddings
    original = emb.random_masking

    def keeps_half(sequence, noise=None):
        kept, mask, restore = original(sequence, noise)
        return kept[:, : sequence.shape[1] // 2], mask, restore

    emb.random_masking = keeps_half
    x, y = images_and_labels()
    with pytest.raises(ValueError, match="mask"):
        run(model, loader_of(x, y))
    assert model.config.mask_ratio == 0.75 and hooks(model) == 0


def test_hiera_masked_autoencoder_is_refused_with_advice():
    from transformers import HieraConfig, HieraModel

    config = HieraConfig(
        embed_dim=8,
        image_size=[32, 32],
        patch_size=[3, 3],
        patch_stride=[2, 2],
        patch_padding=[1, 1],
        depths=[1, 1],
        num_heads=[1, 1],
        masked_unit_size=[4, 4],
        num_query_pool=1,
        query_stride=[2, 2],
    )
    model = HieraModel(config, is_mae=True).eval()
    x, y = images_and_labels()
    with pytest.raises(ValueError, match="is_mae=False"):
        run(model, loader_of(x, y))
    assert no_feeder_threads()


# ------------------------------------------------------------- prefix and class tokens
def tiny_videomae():
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    config = VideoMAEConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
    )
    return VideoMAEModel(config).eval()


def test_videomae_has_no_class_token():
    model = tiny_videomae()
    x, y = images_and_labels(shape=(4, 3, 32, 32))
    with pytest.raises(ValueError, match="class token"):
        run(model, loader_of(x, y), pooling="cls")
    assert no_feeder_threads()
    with torch.no_grad():
        tokens = model(pixel_values=x).last_hidden_state.double().numpy()
    assert tokens.shape[1] == 2 * 16  # every token is a patch token: avg keeps them all
    ranking, acc = run(model, loader_of(x, y), pooling="avg")
    assert_matches_features(ranking, acc, tokens.mean(1), y.numpy())


def tiny_timm_vit(**kw):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=2,
        num_heads=2,
        num_classes=0,
        **kw,
    ).eval()


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_timm_vit_without_class_token(reg_tokens):
    model = tiny_timm_vit(class_token=False, global_pool="avg", reg_tokens=reg_tokens)
    x, y = images_and_labels()
    with pytest.raises(ValueError, match="class token"):
        run(model, loader_of(x, y), pooling="cls")
    with torch.no_grad():
        tokens = model.forward_features(x).double().numpy()
    assert tokens.shape[1] == reg_tokens + 16
    ranking, acc = run(model, loader_of(x, y), pooling="avg")
    assert_matches_features(ranking, acc, tokens[:, reg_tokens:].mean(1), y.numpy())


def test_timm_cnn_maps_have_no_class_token():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    x, y = images_and_labels()
    with pytest.raises(ValueError, match="cls"):
        run(model, loader_of(x, y), pooling="cls")


def test_hf_prefix_tokens_are_counted_from_the_model():
    """DeiT has a class and a distillation token, DINOv2 with registers a class token
    and register tokens: avg pools the patch tokens only, cls takes the class token."""
    from transformers import (
        DeiTConfig,
        DeiTModel,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    common = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
    }
    torch.manual_seed(0)
    models = [
        (DeiTModel(DeiTConfig(**common)).eval(), 2),
        (
            Dinov2WithRegistersModel(
                Dinov2WithRegistersConfig(num_register_tokens=3, **common)
            ).eval(),
            4,
        ),
    ]
    x, y = images_and_labels()
    for model, prefix in models:
        with torch.no_grad():
            tokens = model(pixel_values=x).last_hidden_state.double().numpy()
        assert tokens.shape[1] == prefix + 16
        for pooling, want in [("avg", tokens[:, prefix:].mean(1)), ("cls", tokens[:, 0])]:
            ranking, acc = run(model, loader_of(x, y), pooling=pooling)
            assert_matches_features(ranking, acc, want, y.numpy())


# ------------------------------------------------------------- producers reusing buffers
class ReusingLoader:
    """Yields the same x and y objects every batch, refilled in place."""

    def __init__(self, x, y, batch_size, numpy_labels=False):
        self.x, self.y, self.bs = x, y, batch_size
        self.xbuf = torch.empty((batch_size, *x.shape[1:]), dtype=x.dtype)
        self.ybuf = (
            np.empty(batch_size, np.int64)
            if numpy_labels
            else torch.empty(batch_size, dtype=torch.int64)
        )

    def __iter__(self):
        for i in range(0, len(self.y), self.bs):
            n = len(self.y[i : i + self.bs])
            self.xbuf[:n] = self.x[i : i + self.bs]
            if isinstance(self.ybuf, np.ndarray):
                self.ybuf[:n] = self.y[i : i + self.bs].numpy()
            else:
                self.ybuf[:n] = self.y[i : i + self.bs]
            yield self.xbuf[:n], self.ybuf[:n]


class PersistentOutput(torch.nn.Module):
    """Writes its (B, D) output into one persistent buffer, as some CPU models do."""

    def __init__(self, d_in, d_out=6, max_batch=64):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = torch.nn.Parameter(torch.randn(d_in, d_out, generator=g))
        self.register_buffer("out", torch.zeros(max_batch, d_out))

    def forward(self, x):
        n = x.shape[0]
        torch.matmul(x.flatten(1), self.w, out=self.out[:n])
        return self.out[:n]


@pytest.mark.parametrize("numpy_labels", [False, True])
@pytest.mark.parametrize("pooling", ["avg", "buffer-callable"])
def test_reused_loader_and_model_buffers_give_the_same_statistics(numpy_labels, pooling):
    x, y = images_and_labels(shape=(1, 4, 4), seed=1)
    x, y = x.repeat(20, 1, 1, 1), y.repeat(20)  # 1920 rows in 240 batches of 8
    model = PersistentOutput(16)
    if pooling == "avg":
        pool = "avg"  # a (B, D) output is passed through: the model's buffer itself
    else:
        keep = torch.zeros(8, 6)

        def pool(out):  # a callable that returns a view of its own persistent buffer
            keep[: len(out)] = out * 2
            return keep[: len(out)]

    fresh_r, fresh_acc = run(model, loader_of(x, y, 8), pooling=pool)
    for _ in range(3):
        r, acc = run(model, ReusingLoader(x, y, 8, numpy_labels), pooling=pool)
        assert_same_state(acc, fresh_acc)
        assert r == fresh_r
    feats = (x.flatten(1).double() @ model.w.detach().double()).numpy()
    assert_matches_features(fresh_r, fresh_acc, feats * (1 if pooling == "avg" else 2), y.numpy())


# ------------------------------------------------------------- training flags, failures
class ModeDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.flat = torch.nn.Flatten()
        self.drop = torch.nn.Dropout(0.5)
        self.bn = torch.nn.BatchNorm1d(48)
        self.lin = torch.nn.Linear(48, 8)

    def forward(self, x):
        return self.lin(self.bn(self.drop(self.flat(x))))


@pytest.mark.parametrize("top_training", [True, False])
def test_every_submodule_keeps_its_training_flag(top_training):
    model = ModeDependent()
    model.train(top_training)
    model.bn.eval()  # frozen statistics while the rest trains
    model.drop.train()
    before = flags(model)
    stats = model.bn.running_mean.clone()
    x, y = images_and_labels(shape=(3, 4, 4))
    r1, a1 = run(model, loader_of(x, y))
    _, a2 = run(model, loader_of(x, y))
    assert flags(model) == before
    torch.testing.assert_close(model.bn.running_mean, stats, rtol=0, atol=0)  # eval: untouched
    assert_same_state(a1, a2)  # dropout off: deterministic
    with torch.no_grad():
        feats = model.lin(model.bn.eval()(x.flatten(1))).double().numpy()  # eval-mode reference
    assert_matches_features(r1, a1, feats, y.numpy())


class FailsOnBatch(torch.nn.Module):
    def __init__(self, fail_at, exc=RuntimeError):
        super().__init__()
        self.lin = torch.nn.Linear(48, 8)
        self.calls, self.fail_at, self.exc = 0, fail_at, exc

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.exc(f"forward failed on batch {self.fail_at}")
        return self.lin(x.flatten(1))


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_forward_failing_midway_restores_and_stops(exc):
    model = FailsOnBatch(3, exc)
    model.train()
    model.lin.eval()
    before = flags(model)
    x, y = images_and_labels(shape=(3, 4, 4))
    with pytest.raises(exc, match="batch 3"):
        run(model, loader_of(x, y, 8))
    assert no_feeder_threads()  # the accumulation thread was stopped, not left to finish
    assert flags(model) == before


def test_feeder_failure_is_raised_and_stops_the_thread():
    x, y = images_and_labels(shape=(3, 4, 4))
    y = y.clone()
    y[50] = C  # out of range for num_classes: raised by the accumulation thread
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8))
    with pytest.raises(ValueError, match="class"):
        run(model, loader_of(x, y, 8))
    assert no_feeder_threads()


def test_half_precision_model():
    """A float16 model on the CPU: inputs are cast to its dtype, features accumulated in
    float64 are those of the float16 model."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8)).half()
    x, y = images_and_labels(shape=(3, 4, 4))
    with torch.no_grad():
        feats = model(x.half()).double().numpy()
    ranking, acc = run(model, loader_of(x, y))
    assert_matches_features(ranking, acc, feats, y.numpy())
    assert next(model.parameters()).dtype == torch.float16


def test_inputs_that_are_not_tensors_are_refused():
    x, y = images_and_labels(shape=(3, 4, 4))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8))
    model.train()
    batches = [(x[i : i + 8].numpy(), y[i : i + 8]) for i in range(0, N, 8)]
    with pytest.raises(TypeError, match="inputs must be a torch tensor"):
        run(model, batches)
    assert model.training and model[1].training
    assert no_feeder_threads()


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_timm_channels_last_maps_are_pooled_over_space(pooling):
    """timm's Swin returns (B, H, W, C) from forward_features (output_fmt "NHWC"): the
    features are the C channels pooled over H x W, not W x C pooled over H."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=32,
        window_size=2,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 1),
        num_classes=0,
    ).eval()
    x, y = images_and_labels()
    with torch.no_grad():
        maps = model.forward_features(x).double().numpy()
    assert maps.shape[1:] == (4, 4, 32) and model.output_fmt == "NHWC"
    want = maps.mean((1, 2)) if pooling == "avg" else maps.max((1, 2))
    ranking, acc = run(model, loader_of(x, y), pooling=pooling)
    assert_matches_features(ranking, acc, want, y.numpy())


def test_finetuned_vitmae_classifier_sees_every_patch_and_keeps_its_flags():
    """Classifier, evaluate and predict run a ViTMAE backbone without its masking, so
    predictions are deterministic and equal a head applied to the hand-computed patch
    average; evaluate/predict put every submodule's training flag back."""
    from labelranker_fast.torch import Classifier, evaluate, predict

    x, y = images_and_labels()
    backbone = tiny_vitmae()
    clf = Classifier(backbone, 32, C, head_seed=3, pooling="avg")
    clf.train()
    backbone.layernorm.eval()  # mixed flags must come back as they were
    before = flags(clf)
    first = predict(clf, loader_of(x, y), device="cpu")
    again = predict(clf, loader_of(x, y), device="cpu")
    np.testing.assert_array_equal(first, again)
    assert flags(clf) == before and hooks(clf) == 0
    feats = vitmae_tokens(backbone, x)[:, 1:].mean(1)
    W = clf.head.weight.detach().double().numpy()
    b = clf.head.bias.detach().double().numpy()
    np.testing.assert_array_equal(first, np.argmax(feats @ W.T + b, axis=1))
    evaluate(clf, loader_of(x, y), device="cpu")
    assert flags(clf) == before
    with torch.no_grad():  # training mode too: all patches
        out1, out2 = clf(x[:8]), clf(x[:8])
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)


# ------------------------------------------------------------- Hugging Face classifiers
HF_TINY = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "image_size": 16,
    "num_labels": C,
}


def tiny_hf_classifier(kind):
    """(classifier, its backbone, input shape); random weights, dropout off by default."""
    import transformers as tf

    torch.manual_seed(0)
    if kind == "vit":
        m = tf.ViTForImageClassification(tf.ViTConfig(patch_size=4, **HF_TINY))
        return m, m.vit, (3, 16, 16)
    if kind == "deit":
        m = tf.DeiTForImageClassification(tf.DeiTConfig(patch_size=4, **HF_TINY))
        return m, m.deit, (3, 16, 16)
    if kind == "dinov2":
        m = tf.Dinov2ForImageClassification(tf.Dinov2Config(patch_size=4, **HF_TINY))
        return m, m.dinov2, (3, 16, 16)
    mean = kind == "videomae"  # "videomae-first": use_mean_pooling=False
    config = tf.VideoMAEConfig(
        patch_size=8, num_frames=4, tubelet_size=2, use_mean_pooling=mean, **HF_TINY
    )
    m = tf.VideoMAEForVideoClassification(config)
    return m, m.videomae, (4, 3, 16, 16)  # (T, C, H, W)


def head_input_by_hand(kind, model, tokens):
    """What each architecture's classifier sees, written from its definition."""
    if kind in ("vit", "deit", "videomae-first"):
        return tokens[:, 0]
    if kind == "dinov2":
        return torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1)
    return model.fc_norm(tokens.mean(1))  # VideoMAE with use_mean_pooling


PREFIX = {"vit": 1, "deit": 2, "dinov2": 1, "videomae": 0, "videomae-first": 0}


@pytest.mark.parametrize("kind", ["vit", "deit", "dinov2", "videomae", "videomae-first"])
@pytest.mark.parametrize("pooling", ["avg", "cls", "max", "callable", "head"])
def test_hf_classifier_ranks_as_its_backbone(kind, pooling):
    """A *ForImageClassification / *ForVideoClassification gives the same statistics, bit
    for bit, as its base model with the same pooling ("head": the base model's tokens
    pooled as the classifier pools them, computed here by hand); the features are those
    computed independently from the backbone's tokens."""
    clf, backbone, shape = tiny_hf_classifier(kind)
    clf.eval()
    x, y = images_and_labels(shape=shape)
    with torch.no_grad():
        tokens = backbone(pixel_values=x).last_hidden_state
        head_feats = head_input_by_hand(kind, clf, tokens).double().numpy()
    tokens = tokens.double().numpy()
    patches = tokens[:, PREFIX[kind] :]
    if pooling == "cls" and PREFIX[kind] == 0:
        with pytest.raises(ValueError, match="class token"):
            run(clf, loader_of(x, y), pooling=pooling)
        return
    want = {
        "avg": patches.mean(1),
        "cls": tokens[:, 0],
        "max": patches.max(1),
        "callable": tokens[:, -1],
        "head": head_feats,
    }[pooling]
    fn = (lambda out: out.last_hidden_state[:, -1]) if pooling == "callable" else pooling
    ranking, acc = run(clf, loader_of(x, y), pooling=fn)
    assert_matches_features(ranking, acc, want, y.numpy())
    if pooling != "head":  # the backbone itself, same pooling: identical statistics
        ref_ranking, ref_acc = run(backbone, loader_of(x, y), pooling=fn)
        assert_same_state(acc, ref_acc)
        np.testing.assert_array_equal(ranking.order, ref_ranking.order)
        np.testing.assert_array_equal(ranking.centroids, ref_ranking.centroids)
    elif kind in ("vit", "deit"):  # their head sees the class token: pooling="cls"
        ref_ranking, ref_acc = run(backbone, loader_of(x, y), pooling="cls")
        assert_same_state(acc, ref_acc)
        assert ranking == ref_ranking


def test_hf_classifier_flags_and_hooks_are_restored():
    """Mixed training flags come back, and the head hook of pooling="head" is gone, after
    a call and after a failure midway."""
    clf, _, shape = tiny_hf_classifier("videomae")
    clf.train()
    clf.fc_norm.eval()
    before = flags(clf)
    x, y = images_and_labels(shape=shape)
    run(clf, loader_of(x, y), pooling="head")
    assert flags(clf) == before and hooks(clf) == 0

    def failing():
        for i, batch in enumerate(loader_of(x, y)):
            if i == 2:
                raise RuntimeError("loader failed on batch 3")
            yield batch

    with pytest.raises(RuntimeError, match="batch 3"):
        run(clf, failing(), pooling="head")
    assert flags(clf) == before and hooks(clf) == 0
    assert no_feeder_threads()


class CountingLoader:
    def __init__(self, loader):
        self.loader, self.batches = loader, 0

    def __iter__(self):
        for batch in self.loader:
            self.batches += 1
            yield batch


def test_hf_classifier_without_a_findable_backbone_is_refused_before_any_batch():
    """CLIP's classifier keeps its encoder at vision_model, not at base_model_prefix
    ("clip"): refused by name with advice, not pooled from a guess; a model with two heads
    (DeiT's distilled classifier) or none (a bare ViTModel) refuses pooling="head"."""
    import transformers as tf

    from labelranker_fast.torch import Classifier, finetune

    vision = {k: v for k, v in HF_TINY.items() if k != "num_labels"} | {"patch_size": 8}
    text = {k: HF_TINY[k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size")}
    text["num_attention_heads"] = 2
    clip = tf.CLIPForImageClassification(
        tf.CLIPConfig(vision_config=vision, text_config=text, num_labels=C)
    )
    x, y = images_and_labels(shape=(3, 16, 16))
    loader = CountingLoader(loader_of(x, y))
    for pooling in ["avg", "cls", lambda out: out[0][:, 0]]:
        with pytest.raises(
            ValueError, match=r"CLIPForImageClassification.*model\.clip.*vision_model"
        ):
            run(clip, loader, pooling=pooling)
    assert loader.batches == 0 and no_feeder_threads()
    with pytest.raises(ValueError, match="base_model_prefix"):
        Classifier(clip, 16, C)
    with pytest.raises(ValueError, match="base_model_prefix"):
        finetune(clip, loader, num_classes=C, epochs=1, device="cpu", progress=False)
    assert loader.batches == 0

    teacher = tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(patch_size=4, **HF_TINY))
    bare = tf.ViTModel(tf.ViTConfig(patch_size=4, **HF_TINY))
    for model in (teacher, bare):
        with pytest.raises(ValueError, match="pooling='head' needs .*`classifier`"):
            run(model, loader_of(x, y), pooling="head")
        assert hooks(model) == 0
    ranking, acc = run(teacher, loader_of(x, y), pooling="avg")  # its backbone is found
    _, ref = run(teacher.deit, loader_of(x, y), pooling="avg")
    assert_same_state(acc, ref)


def logits_by_hand(clf, x):
    with torch.no_grad():
        return clf.eval()(pixel_values=x).logits.double().numpy()


@pytest.mark.parametrize("kind", ["vit", "videomae"])
def test_predict_and_evaluate_take_an_hf_classifier(kind):
    """predict/evaluate read ``.logits`` of a ModelOutput: predictions are the ranking's
    classes at the argmax columns, loss and accuracy those of a float64 log-softmax."""
    from labelranker_fast.torch import evaluate, predict

    clf, _, shape = tiny_hf_classifier(kind)
    x, y = images_and_labels(shape=shape)
    ranking = lrf.LabelRanking(np.arange(C), [2, 0, 3, 1], np.arange(C, dtype=float), [1.0])
    positions = np.array([1, 3, 0, 2])  # of classes 0..3 under order [2, 0, 3, 1]
    logits = logits_by_hand(clf, x)
    clf.train()
    clf.classifier.eval()  # mixed flags must come back as they were
    before = flags(clf)
    pred = predict(clf, loader_of(x, y), ranking=ranking, device="cpu")
    np.testing.assert_array_equal(pred, np.array([2, 0, 3, 1])[logits.argmax(1)])
    np.testing.assert_array_equal(predict(clf, loader_of(x, y), device="cpu"), logits.argmax(1))
    got = evaluate(clf, loader_of(x, y), ranking=ranking, device="cpu")  # C from config
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    pos = positions[y.numpy()]
    assert got["loss"] == pytest.approx(-logp[np.arange(N), pos].mean(), rel=1e-5)
    assert got["accuracy"] == pytest.approx((logits.argmax(1) == pos).mean())
    assert flags(clf) == before


def test_predict_and_evaluate_refuse_outputs_without_logits():
    from labelranker_fast.torch import evaluate, predict

    x, y = images_and_labels(shape=(3, 16, 16))
    clf, _, _ = tiny_hf_classifier("vit")

    class AsTuple(torch.nn.Module):  # what return_dict=False gives
        def __init__(self):
            super().__init__()
            self.clf = clf

        def forward(self, x):
            return (self.clf(pixel_values=x).logits,)

    with pytest.raises(TypeError, match="return_dict=True"):
        predict(AsTuple(), loader_of(x, y), device="cpu")
    with pytest.raises(TypeError, match=r"\.logits"):
        evaluate(AsTuple(), loader_of(x, y), num_classes=C, device="cpu")
    with pytest.raises(ValueError, match="4 logits per sample, but num_classes is 5"):
        evaluate(clf, loader_of(x, y), num_classes=5, device="cpu")
    tokens = torch.nn.Sequential(torch.nn.Flatten(2))  # (B, 3, 256): not logits
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        predict(tokens, loader_of(x, y), device="cpu")
    with pytest.raises(TypeError, match="pass num_classes"):
        evaluate(tokens, loader_of(x, y), device="cpu")


def test_finetune_of_an_hf_classifier_is_finetune_of_its_backbone(tmp_path):
    """With poolings other than "head", fine-tuning the classifier trains exactly what
    fine-tuning its backbone trains (same losses, same weights after), and the
    classifier's own head is left as it was; its checkpoint resumes; with "head" the
    fresh head sits on the classifier's pre-logits features (VideoMAE: fc_norm of the
    mean token)."""
    import copy

    from labelranker_fast.torch import finetune

    clf, _, shape = tiny_hf_classifier("videomae")
    twin, fresh = copy.deepcopy(clf), copy.deepcopy(clf)
    own_head = copy.deepcopy(clf.classifier.state_dict())
    x, y = images_and_labels(shape=shape)
    kw = {"num_classes": C, "epochs": 2, "warmup_epochs": 1, "device": "cpu", "progress": False}
    ranking = lrf.LabelRanking(np.arange(C), [2, 0, 3, 1], np.arange(C, dtype=float), [1.0])
    ckpt = tmp_path / "ckpt.pt"
    a = finetune(clf, loader_of(x, y), ranking=ranking, head_seed=5, checkpoint_path=ckpt, **kw)
    resumed = finetune(
        fresh, loader_of(x, y), ranking=ranking, head_seed=5, checkpoint_path=ckpt, **kw
    )  # every epoch done: the checkpoint's weights and history, nothing trained
    assert resumed.history == a.history
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    b = finetune(twin.videomae, loader_of(x, y), ranking=ranking, head_seed=5, **kw)
    assert a.model.backbone is clf
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-6, abs=1e-7)
    for (name, p), q in zip(clf.videomae.named_parameters(), twin.videomae.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    torch.testing.assert_close(a.model.head.weight, b.model.head.weight, rtol=1e-6, atol=1e-7)
    for k, v in clf.classifier.state_dict().items():
        torch.testing.assert_close(v, own_head[k], rtol=0, atol=0)  # not trained

    head = finetune(clf, loader_of(x, y), pooling="head", **{**kw, "epochs": 1})
    with torch.no_grad():
        tokens = clf.videomae(pixel_values=x).last_hidden_state
        want = head.model.head(clf.fc_norm(tokens.mean(1)))
        got = head.model.eval()(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_finetune_refusing_its_arguments_leaves_the_backbones_flags_alone():
    """finetune probes the feature width on one batch before building the head; a call
    refused after that probe (a bad head_seed, a ranking of other classes) must leave
    every submodule's training flag as it was (the probe once set them all to train)."""
    from labelranker_fast.torch import finetune

    clf, _, shape = tiny_hf_classifier("videomae")
    clf.train()
    clf.videomae.encoder.eval()  # frozen layers while the rest trains
    before = flags(clf)
    x, y = images_and_labels(shape=shape)
    kw = {"num_classes": C, "epochs": 1, "device": "cpu", "progress": False}
    with pytest.raises(ValueError, match="head_seed"):
        finetune(clf, loader_of(x, y), head_seed=-1, **kw)
    assert flags(clf) == before
    other = lrf.LabelRanking(np.arange(5), np.arange(5), np.arange(5.0), [1.0])
    with pytest.raises(ValueError, match="ranking of the class indices"):
        finetune(clf, loader_of(x, y), ranking=other, **kw)
    assert flags(clf) == before and hooks(clf) == 0
