"""The pipeline's stages (``worker.pipeline`` runs them in order). Each takes the ``Run``.

Files a run directory holds, by the stage that writes them:
- prepare: ``dataset/``
- train_recommender: ``recommender.safetensors`` + ``recommender.json``, ``recommender_report.json``
- probe: ``probe.npz`` (cases + representations), ``vectors.safetensors`` (what steering needs)
- train_sae: ``sae/cfg.json`` + ``sae/sae_weights.safetensors``, ``sae_report.json``
- record: ``record.npz`` (TopK codes and the model's top-10 of every case)
- interpret: ``interpretation.pkl`` (levels, examples, concepts, statistics; SAE and Base)
- evaluate: ``report.json`` (the paper's tables and figures, SPEC §1.9)
- publish: the database
"""

from __future__ import annotations

import pickle
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import save_file

from worker.cases import DEV, SIDE_NAMES, TEST, TRAIN, Cases, build_cases
from worker.data.dataset import Dataset

if TYPE_CHECKING:
    from worker.pipeline import Run


# ---------------------------------------------------------------------------- loading helpers
def load_dataset(run: Run) -> Dataset:
    if "dataset" not in run._cache:
        run._cache["dataset"] = Dataset.load(run.dir / "dataset")
    return run._cache["dataset"]


def probed_sequential(run: Run) -> bool:
    """Whether the probed model's representation depends on the history (written by probe)."""
    return bool(np.load(run.dir / "probe.npz")["sequential"])


def load_probe(run: Run) -> tuple[Cases, np.ndarray, np.ndarray]:
    """(cases, reps [C, d], item_emb [n_items, d])."""
    arrays = np.load(run.dir / "probe.npz")
    cases = Cases(arrays["user"], arrays["length"], arrays["side"])
    return cases, arrays["reps"], arrays["item_emb"]


def load_sae(run: Run):  # -> TopKSAE
    from worker.sae.io import load_sae as load

    return load(run.dir / "sae")


def user_vector_cases(dataset: Dataset) -> Cases:
    """Each user at the test position: the vector the explorer shows and steers."""
    from worker.probe import leave_one_out_cases

    return leave_one_out_cases(dataset, TEST)


# ---------------------------------------------------------------------------------- stages
def prepare(run: Run) -> None:
    from worker.data.preprocess import PrepareConfig, preprocess
    from worker.data.readers import read_dataset

    cfg = run.config
    raw = read_dataset(cfg.dataset_format, cfg.dataset_path)
    dataset = preprocess(raw, PrepareConfig(cfg.rating_threshold, cfg.k_core), log=run.log)
    dataset.name = cfg.dataset_name
    dataset.save(run.dir / "dataset")
    run._cache["dataset"] = dataset


def train_recommender(run: Run) -> None:
    from worker.metrics.ranking import ranking_report
    from worker.probe import evaluate
    from worker.recommenders.io import save_recommender
    from worker.recommenders.train import build_recommender, default_config
    from worker.recommenders.train import train_recommender as train

    cfg = run.config
    dataset = load_dataset(run)
    config = default_config(cfg.recommender, **{"seed": cfg.seed, **cfg.recommender_overrides})
    model, report = train(dataset, cfg.recommender, config)
    save_recommender(model, config, run.dir)

    # MostPop: the floor every model must beat (SPEC §1.2).
    mostpop = build_recommender("mostpop", dataset.n_users, dataset.n_items, config)
    mostpop.prepare(dataset)
    report["mostpop_test_ci"] = ranking_report(evaluate(mostpop, dataset, TEST), seed=cfg.seed)
    report["config"] = asdict(config)
    run.write_json("recommender_report.json", report)
    run.log(
        f"  {cfg.recommender}: test NDCG@10 {report['test']['ndcg@10']:.4f} "
        f"(MostPop {report['mostpop_test_ci']['ndcg@10']['mean']:.4f})"
    )


def probe(run: Run) -> None:
    from worker.probe import probe as probe_reps
    from worker.recommenders.io import load_recommender

    cfg = run.config
    dataset = load_dataset(run)
    model = load_recommender(run.dir)
    cases = build_cases(dataset, model.sequential, seed=cfg.seed)
    reps = probe_reps(model, dataset, cases)
    with torch.no_grad():
        item_emb = model.item_embeddings().float().numpy()
    user_cases = user_vector_cases(dataset)
    user_vectors = probe_reps(model, dataset, user_cases)
    np.savez(
        run.dir / "probe.npz",
        user=cases.user, length=cases.length, side=cases.side, reps=reps, item_emb=item_emb,
        sequential=np.array(model.sequential),
    )  # fmt: skip
    save_file(
        {
            "item_embeddings": np.ascontiguousarray(item_emb, dtype=np.float32),
            "user_vectors": np.ascontiguousarray(user_vectors, dtype=np.float32),
        },
        str(run.dir / "vectors.safetensors"),
    )
    counts = {SIDE_NAMES[s]: int((cases.side == s).sum()) for s in (TRAIN, DEV, TEST)}
    run.log(f"  probed {len(cases)} cases ({counts}), d = {reps.shape[1]}")


def _dev_cases(dataset: Dataset, cases: Cases, sequential: bool) -> tuple[Cases, np.ndarray]:
    """DEV-side cases whose targets are dev items (never the test item), with their index."""
    dev_index = np.flatnonzero(cases.side == DEV)
    dev = cases.subset(dev_index)
    if not sequential:  # one vector per user: score it against the user's dev item instead
        dev = Cases(dev.user, dev.length - 1, dev.side)
    return dev, dev_index


def auto_scale(n_train: int, d: int, sequential: bool) -> int:
    """The SAE scale s when the run does not fix one (see ``RunConfig.sae_scale``)."""
    if sequential:
        return 16
    scale = 16
    while scale > 1 and scale * d > n_train / 3:
        scale //= 2
    return scale


def sae_config(cfg: Any, sequential: bool, train_shape: tuple[int, int]) -> Any:
    """SAEConfig for this run: per-kind defaults (measured in benchmarks/sae.py), then overrides.

    Sequential models give ~40k training vectors: bounded epochs keep the demo fast (dev FVU
    moves by < 0.01 after ~150 epochs). One vector per user gives a few hundred: full-batch steps
    and a longer patience, early-stopped on dev FVU so the SAE does not memorise (SPEC §1.4).
    """
    from worker.sae.train import SAEConfig

    n_train, d = train_shape
    scale = cfg.sae_scale or auto_scale(n_train, d, sequential)
    kind = (
        {"lr": 3e-3, "batch_size": 4096, "max_epochs": 150, "patience": 10}
        if sequential
        else {"lr": 3e-3, "batch_size": 4096, "patience": 30}
    )
    return SAEConfig(scale=scale, k=cfg.sae_k, seed=cfg.seed, **{**kind, **cfg.sae_overrides})


def train_sae(run: Run) -> None:
    from worker.metrics.ranking import per_case_ndcg, ranking_report
    from worker.metrics.reconstruction import fvu
    from worker.probe import rank_targets
    from worker.sae.baselines import pca_fvu, random_sae, train_dense_ae
    from worker.sae.io import save_sae
    from worker.sae.train import encode_batched
    from worker.sae.train import train_sae as train

    cfg = run.config
    dataset = load_dataset(run)
    cases, reps, item_emb = load_probe(run)
    sequential = probed_sequential(run)
    x_train, x_test = reps[cases.side == TRAIN], reps[cases.side == TEST]
    dev, dev_index = _dev_cases(dataset, cases, sequential)
    x_dev = reps[dev_index]

    def dev_ndcg(sae: Any) -> float:  # SPEC §1.4: select on dev NDCG of the reconstructed model
        _, _, x_hat = encode_batched(sae, x_dev)
        return float(per_case_ndcg(rank_targets(item_emb, x_hat, dataset, dev), 10).mean())

    config = sae_config(cfg, sequential, x_train.shape)
    if "score_tolerance" not in cfg.sae_overrides:
        # Dev NDCG vetoes only checkpoints that are clearly worse: more than the half-width of
        # the base model's 95% CI on the same dev cases (SPEC §2: judge by CIs; 60 dev users
        # give +-0.02, so a fixed small tolerance would select on noise).
        base_dev = per_case_ndcg(rank_targets(item_emb, x_dev, dataset, dev), 10)
        config.score_tolerance = float(1.96 * base_dev.std() / np.sqrt(len(base_dev)))
    sae, report = train(x_train, x_dev, config, dev_score_fn=dev_ndcg)
    report["score_tolerance"] = config.score_tolerance
    save_sae(sae, config, run.dir / "sae")

    # Table 7 and SPEC §1.4: the model with x replaced by x_hat (SAE, random SAE, dense AE),
    # on every user's test case; FVU on vectors the SAE never trained on, beside PCA-k.
    user_cases = user_vector_cases(dataset)
    user_vectors = probe_user_vectors(run)
    rand = random_sae(reps.shape[1], config.scale * reps.shape[1], config.k,
                      b_dec=x_train.mean(0), seed=cfg.seed)  # fmt: skip
    ae, ae_report = train_dense_ae(x_train, x_dev, hidden=8, seed=cfg.seed)
    recon = {
        "sae": encode_batched(sae, user_vectors)[2],
        "random_sae": encode_batched(rand, user_vectors)[2],
        "ae": _dense_reconstruct(ae, user_vectors),
    }
    rec_report = run.read_json("recommender_report.json")
    ranking = {
        "mostpop": rec_report["mostpop_test_ci"],
        "base": ranking_report(rank_targets(item_emb, user_vectors, dataset, user_cases)),
    }
    for name, x_hat in recon.items():
        ranking[name] = ranking_report(rank_targets(item_emb, x_hat, dataset, user_cases))
    report.update(
        fvu_test=fvu(x_test, encode_batched(sae, x_test)[2]),
        pca_fvu_test=pca_fvu(x_train, x_test, config.k),
        random_sae_fvu_test=fvu(x_test, encode_batched(rand, x_test)[2]),
        ae_fvu_test=fvu(x_test, _dense_reconstruct(ae, x_test)),
        ae=ae_report,
        n_train_vectors=len(x_train),
        n_dev_vectors=len(x_dev),
        n_test_vectors=len(x_test),
        config=asdict(config),
        ranking=ranking,
    )
    report.pop("history", None)
    run.write_json("sae_report.json", report)
    run.log(
        f"  SAE: FVU test {report['fvu_test']:.3f} (PCA-{config.k} {report['pca_fvu_test']:.3f}, "
        f"random {report['random_sae_fvu_test']:.3f}), dead {report['dead_fraction']:.1%}, "
        f"NDCG@10 {ranking['sae']['ndcg@10']['mean']:.4f} vs base "
        f"{ranking['base']['ndcg@10']['mean']:.4f}, {report['vectors_per_second']:.0f} vectors/s"
    )


def _dense_reconstruct(ae: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return ae(torch.as_tensor(x, dtype=torch.float32)).numpy()


def probe_user_vectors(run: Run) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(run.dir / "vectors.safetensors"))["user_vectors"]


def record(run: Run) -> None:
    """SPEC §1.5: for every case, the TopK codes and the model's top-10 (history masked)."""
    from worker.probe import top_items
    from worker.sae.train import encode_batched

    dataset = load_dataset(run)
    cases, reps, item_emb = load_probe(run)
    sae = load_sae(run)
    latent_idx, latent_val, _ = encode_batched(sae, reps)
    top = top_items(item_emb, reps, dataset, cases, n=10)
    user_vectors = probe_user_vectors(run)
    user_idx, user_val, _ = encode_batched(sae, user_vectors)
    user_top = top_items(item_emb, user_vectors, dataset, user_vector_cases(dataset))
    np.savez(
        run.dir / "record.npz",
        latent_idx=latent_idx, latent_val=latent_val, top_items=top,
        user_latent_idx=user_idx, user_latent_val=user_val, user_top_items=user_top,
    )  # fmt: skip


def verification_pool(cases: Cases) -> Cases:
    """The cases as interpretation sees them: DEV joins TEST in the verification pool.

    SPEC §1.7: construction from the training side, verification from held-out cases. The DEV
    cases are held out from the recommender and the concepts alike (the SAE only used them to
    pick a checkpoint by FVU), and with one test case per user a 1,024-latent SAE would leave
    most latents with fewer than N active verification cases.
    """
    side = np.where(cases.side == DEV, TEST, cases.side).astype(np.int8)
    return Cases(cases.user, cases.length, side)


def _interpret_codes(
    dataset: Dataset, cases: Cases, idx: np.ndarray, val: np.ndarray, top: np.ndarray,
    n_latents: int, n: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """SPEC §1.6–1.8 on one set of codes (the SAE's, or the Base dimensions')."""
    from worker.interpret.examples import select_examples
    from worker.interpret.levels import assign_levels, fit_level_edges
    from worker.interpret.statistics import latent_statistics
    from worker.interpret.tfidf import tfidf_concepts

    train_mask = cases.side == TRAIN
    cases = verification_pool(cases)
    edges = fit_level_edges(idx, val, train_mask, n_latents)
    levels = assign_levels(idx, val, edges)
    pooled_levels = assign_levels(idx, val, fit_level_edges(idx, val, train_mask, n_latents, False))
    examples = select_examples(cases, idx, val, levels, top, n_latents, n=n, seed=seed)
    return {
        "n_latents": n_latents,
        "edges": edges,
        "levels": levels,
        "pooled_levels": pooled_levels,
        "examples": examples,
        "concepts": tfidf_concepts(examples, dataset.item_text),
        "statistics": latent_statistics(idx, val, train_mask, n_latents),
    }


def interpret(run: Run) -> None:
    from worker.interpret.baseline import base_latents
    from worker.interpret.statistics import decoder_item_effects

    cfg = run.config
    dataset = load_dataset(run)
    cases, reps, item_emb = load_probe(run)
    rec = np.load(run.dir / "record.npz")
    sae = load_sae(run)
    top = rec["top_items"]
    result: dict[str, Any] = {
        "sae": _interpret_codes(
            dataset, cases, rec["latent_idx"], rec["latent_val"], top, sae.n_latents,
            cfg.n_examples, cfg.seed,
        ),
    }  # fmt: skip
    # Base (paper §4.3): the raw dimensions as latents, through the same construction/verification.
    base_idx, base_val = base_latents(reps, sae.k, fit_mask=cases.side == TRAIN)
    result["base"] = _interpret_codes(
        dataset, cases, base_idx, base_val, top, reps.shape[1], cfg.n_examples, cfg.seed
    )
    result["base"]["codes"] = (base_idx, base_val)
    W_dec = sae.W_dec.detach().numpy()
    result["promoted"], result["suppressed"] = decoder_item_effects(W_dec, item_emb)
    with open(run.dir / "interpretation.pkl", "wb") as f:
        pickle.dump(result, f)
    run._cache["interpretation"] = result
    n_ok = sum(
        1 for c in result["sae"]["concepts"] if c.confidence is not None and c.confidence >= 0.8
    )
    run.log(f"  TF-IDF concepts with confidence >= 0.8: {n_ok} of {sae.n_latents} latents")


def load_interpretation(run: Run) -> dict[str, Any]:
    if "interpretation" not in run._cache:
        with open(run.dir / "interpretation.pkl", "rb") as f:
            run._cache["interpretation"] = pickle.load(f)  # our own file, written by interpret
    return run._cache["interpretation"]


VERIFIED = 0.8  # paper §3.3.2 / §5: concepts with confidence >= 0.8 count as verified


def llm_latent_cases(run: Run) -> list[Any]:
    """Every latent's recorded examples as the LLM prompts see them (real histories, SPEC §3)."""
    from core.llm.concepts import ItemLookup, LatentCases
    from worker.publish import HISTORY_SHOWN

    dataset = load_dataset(run)
    cases, _, _ = load_probe(run)
    part = load_interpretation(run)["sae"]
    examples = part["examples"]
    items = ItemLookup.from_dataset(dataset)

    def raw(role: str, lat: int) -> list[tuple[list[int], int, int]]:
        ex = getattr(examples, role)
        out = []
        for slot in np.flatnonzero(ex.case[lat] >= 0):
            c = int(ex.case[lat, slot])
            u, n = int(cases.user[c]), int(cases.length[c])
            history = dataset.sequences[u][max(0, n - HISTORY_SHOWN) : n]
            out.append((history.tolist(), int(ex.item[lat, slot]), int(ex.level[lat, slot])))
        return out

    return [
        LatentCases.from_ids(
            lat,
            items,
            raw("construction", lat),
            raw("verification", lat),
            raw("random", lat),
            too_rare=bool(examples.too_rare[lat]),
        )  # fmt: skip
        for lat in range(part["n_latents"])
    ]


def llm_priority(run: Run) -> list[int]:
    """Latents worth an LLM's time first: verifiable ones, best TF-IDF confidence, then density."""
    part = load_interpretation(run)["sae"]
    too_rare = part["examples"].too_rare
    conf = [c.confidence if c.confidence is not None else -1.0 for c in part["concepts"]]
    density = part["statistics"].density
    order = sorted(
        range(part["n_latents"]), key=lambda i: (bool(too_rare[i]), -conf[i], -density[i])
    )
    return [i for i in order if not part["statistics"].dead[i]]


def explain_llm(run: Run) -> None:
    """LLM concepts (paper §3.3) for the first ``llm_latents`` latents of ``llm_priority``."""
    import contextlib

    from core.llm.client import LLMClient, LLMNotConfigured
    from core.llm.concepts import explain_latents
    from core.llm.prompts import PromptContext, oneshot_kind

    cfg = run.config
    out = run.dir / "llm_concepts.pkl"
    if cfg.llm_latents <= 0:
        out.unlink(missing_ok=True)
        run.log("  skipped (llm_latents = 0)")
        return
    dataset = load_dataset(run)
    settings = run.settings
    with contextlib.ExitStack() as stack:
        if settings.llm_base_url is None:
            if not cfg.llm_local:
                raise LLMNotConfigured(
                    "LLM concepts were asked for (llm_latents > 0) but no LLM is configured: set "
                    "RECSAE_LLM_BASE_URL to an OpenAI-compatible endpoint, or pass --llm-local "
                    "to start the bundled SmolLM2 server"
                )
            from core.llm.server import LocalLLM
            from core.net import free_port

            server = stack.enter_context(LocalLLM(port=free_port(), threads=2))
            settings = settings.model_copy(
                update={"llm_base_url": server.base_url, "llm_model": server.alias}
            )
            run.log(f"  started the local LLM at {server.base_url}")
        client = LLMClient.from_settings(settings)
        ctx = PromptContext(
            item_category=dataset.item_category, item_name=dataset.item_name,
            oneshot=oneshot_kind(cfg.dataset_name),
        )  # fmt: skip
        chosen = set(llm_priority(run)[: cfg.llm_latents])
        concepts = explain_latents(
            [lc for lc in llm_latent_cases(run) if lc.latent_id in chosen], client, ctx
        )
        if client.cache is not None:
            run.log(
                f"  LLM cache: {client.cache.stats.hits} hits, {client.cache.stats.misses} misses"
            )
    with open(out, "wb") as f:
        pickle.dump(concepts, f)
    n_ok = sum(1 for c in concepts if c.confidence is not None and c.confidence >= VERIFIED)
    run.log(f"  LLM concepts: {len(concepts)} latents explained, {n_ok} with confidence >= 0.8")


def load_llm_concepts(run: Run) -> list[Any]:
    path = run.dir / "llm_concepts.pkl"
    if not path.exists():
        return []
    with open(path, "rb") as f:
        return pickle.load(f)  # our own file, written by explain_llm


def evaluate(run: Run) -> None:
    """The paper's report (SPEC §1.9): Tables 3, 4, 6, 7, 8 and Figures 2, 5."""
    from core.text import analyze, item_token_sets
    from worker.interpret.tuning import TuningConfig, targeted_tuning
    from worker.metrics.interpretation import (
        concept_counts,
        confidence_histogram,
        feature_coverage,
        hit_ratio_by_level,
        similarity_table,
        top_latent_items,
    )

    cfg = run.config
    dataset = load_dataset(run)
    cases, reps, item_emb = load_probe(run)
    rec = np.load(run.dir / "record.npz")
    interp = load_interpretation(run)
    sae = load_sae(run)
    top1 = rec["top_items"][:, 0]
    item_tokens = item_token_sets(dataset.item_text)
    codes = {"sae": (rec["latent_idx"], rec["latent_val"]), "base": interp["base"]["codes"]}

    report: dict[str, Any] = {"table3": {}, "table4": {}, "figure2": {}, "figure5": {}}
    verified_concepts: dict[str, dict[int, str]] = {}
    for name, (idx, val) in codes.items():
        part = interp[name]
        conf = [c.confidence for c in part["concepts"]]
        texts = [c.text or None for c in part["concepts"]]
        items = top_latent_items(idx, val, top1, part["n_latents"], n=5)
        report["table3"][name] = similarity_table(items, item_emb, conf, VERIFIED)
        report["table4"][name] = concept_counts(texts, conf, VERIFIED)
        report["figure2"][name] = confidence_histogram(conf)
        verified_concepts[name] = {
            c.latent: c.text
            for c in part["concepts"]
            if c.confidence is not None and c.confidence >= VERIFIED and c.text
        }
        for levels_name in ("levels", "pooled_levels"):
            report["figure5"][f"{name}_{levels_name}"] = hit_ratio_by_level(
                idx, part[levels_name], top1, verified_concepts[name], item_tokens,
                case_mask=cases.side != TRAIN,
            )  # fmt: skip

    llm = load_llm_concepts(run)
    if llm:  # Table 4 for the LLM method, over the latents it explained
        report["table4_llm"] = {
            "sae": concept_counts([c.text or None for c in llm], [c.confidence for c in llm])
        }
        report["figure2_llm"] = {"sae": confidence_histogram([c.confidence for c in llm])}

    genres = [[g for g in gs if g != "(no genres listed)"] for gs in dataset.item_genres]
    terms = sorted(set(verified_concepts["sae"].values()))
    report["table6"] = {
        "genres": feature_coverage(genres, terms, analyze),
        "tags": feature_coverage(dataset.item_tags, terms, analyze),
    }
    sae_report = run.read_json("sae_report.json")
    report["table7"] = sae_report["ranking"]

    if cfg.tuning and verified_concepts["sae"]:
        test_mask = cases.side != TRAIN  # the verification pool (DEV and TEST)
        known = [dataset.sequences[u][:n] for u, n in zip(cases.user, cases.length, strict=True)]
        tuning = targeted_tuning(
            rec["latent_idx"], rec["latent_val"], sae.W_dec.detach().numpy(),
            sae.b_dec.detach().numpy(), item_emb, known, verified_concepts["sae"], item_tokens,
            case_mask=test_mask, x=reps, config=TuningConfig(seed=cfg.seed),
        )  # fmt: skip
        report["table8"] = tuning.summary
        run._cache["tuning"] = tuning.per_latent
        with open(run.dir / "tuning.pkl", "wb") as f:
            pickle.dump(tuning.per_latent, f)
    run.write_json("report.json", report)
    t3, t4 = report["table3"], report["table4"]
    run.log(
        f"  Table 3 intra {t3['base']['intra']:.3f} -> {t3['sae']['intra']:.3f}, inter "
        f"{t3['base']['inter']:.3f} -> {t3['sae']['inter']:.3f}; Table 4 verified "
        f"{t4['base']} -> {t4['sae']}"
    )


def sweep(run: Run) -> None:
    """Figures 7/8 (paper §7): one SAE per (s, k) on the same vectors; optional (``--sweep``)."""
    from worker.sweep import sensitivity_sweep

    out = run.dir / "sweep.json"
    if not run.config.sweep:
        out.unlink(missing_ok=True)
        run.log("  skipped (pass --sweep to run it)")
        return
    cases, reps, _ = load_probe(run)
    sequential = probed_sequential(run)
    x_train = reps[cases.side == TRAIN]
    base = sae_config(run.config, sequential, x_train.shape)
    rows = sensitivity_sweep(
        x_train, reps[cases.side == DEV], reps[cases.side == TEST], seed=run.config.seed,
        base_config=base,
    )  # fmt: skip
    run.write_json("sweep.json", rows)
    for row in rows:
        run.log(
            f"  s={row['scale']:2d} k={row['k']:2d}: FVU test {row['fvu_test']:.3f}, "
            f"dead {row['dead_fraction']:.1%}"
        )


def publish(run: Run) -> None:
    from worker.publish import publish as publish_to_database

    publish_to_database(run)
