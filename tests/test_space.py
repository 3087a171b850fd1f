import numpy as np
import pytest

from hwaml.space import Categorical, Float, Group, Integer, Repeated, SearchSpace, SpaceError


def nas_space():
    return SearchSpace(
        [
            Categorical("resolution", [96, 128, 160]),
            Integer("channels", 8, 64, step=8),
            Integer("batch", 16, 256, log=True),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("dropout", 0.0, 0.5),
            Repeated("stage", [Categorical("kernel", [3, 5, 7]), Categorical("expand", [3, 4, 6])], lengths=[2, 3, 4]),
            Categorical("optimizer", ["sgd", "adam"]),
            Group("sgd", [Float("momentum", 0.5, 0.99), Categorical("nesterov", [True, False])], when={"optimizer": ["sgd"]}),
        ]
    )


def test_samples_are_valid_and_cover_every_choice():
    space = nas_space()
    rng = np.random.default_rng(0)
    seen_len, seen_res = set(), set()
    for _ in range(300):
        cfg = space.sample(rng)
        assert space.validate(cfg) == cfg
        assert (cfg["channels"] - 8) % 8 == 0 and 8 <= cfg["channels"] <= 64
        assert 1e-4 <= cfg["lr"] <= 1e-1
        assert ("sgd" in cfg) == (cfg["optimizer"] == "sgd")
        seen_len.add(len(cfg["stage"]))
        seen_res.add(cfg["resolution"])
    assert seen_len == {2, 3, 4} and seen_res == {96, 128, 160}


def test_log_float_is_log_uniform():
    d = Float("lr", 1e-4, 1e-0, log=True)
    rng = np.random.default_rng(1)
    xs = np.array([d.sample(rng) for _ in range(4000)])
    # a log-uniform over 4 decades puts about a quarter of its mass in each decade
    frac = np.mean(xs < 1e-3)
    assert 0.2 < frac < 0.3


def test_mutate_changes_something_and_stays_valid():
    space = nas_space()
    rng = np.random.default_rng(2)
    cfg = space.sample(rng)
    changed = 0
    for _ in range(50):
        child = space.mutate(cfg, rng, prob=0.3)
        space.validate(child)
        changed += child != cfg
    assert changed > 40
    assert space.mutate(cfg, rng, prob=0.0) == cfg


def test_mutation_can_change_depth_keeping_first_blocks():
    space = nas_space()
    rng = np.random.default_rng(3)
    cfg = space.sample(rng)
    depths = set()
    for _ in range(100):
        child = space.mutate(cfg, rng, prob=0.5)
        depths.add(len(child["stage"]))
    assert depths == {2, 3, 4}


def test_crossover_takes_genes_from_both_parents():
    space = nas_space()
    rng = np.random.default_rng(4)
    a, b = space.sample(rng), space.sample(rng)
    while a["resolution"] == b["resolution"] or a["dropout"] == b["dropout"]:
        b = space.sample(rng)
    from_a = from_b = 0
    for _ in range(60):
        c = space.crossover(a, b, rng)
        space.validate(c)
        from_a += c["dropout"] == a["dropout"]
        from_b += c["dropout"] == b["dropout"]
    assert from_a > 10 and from_b > 10


def test_encode_has_fixed_length_and_distinguishes_configs():
    space = nas_space()
    rng = np.random.default_rng(5)
    vecs = [space.encode(space.sample(rng)) for _ in range(50)]
    assert all(v.shape == (space.size,) for v in vecs)
    assert all(np.all((v >= 0) & (v <= 1)) for v in vecs)
    assert len({v.tobytes() for v in vecs}) == 50


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(resolution=100), "resolution"),
        (lambda c: c.update(channels=12), "channels"),
        (lambda c: c.update(lr=1.0), "lr"),
        (lambda c: c["stage"][1].update(kernel=9), "stage.1.kernel"),
        (lambda c: c.update(stage=c["stage"][:1]), "stage"),
        (lambda c: c.update(resolutoin=96), "resolutoin"),
        (lambda c: c.pop("dropout"), "dropout"),
        (lambda c: c.update(optimizer="adam", sgd={"momentum": 0.9, "nesterov": True}), "sgd"),
    ],
)
def test_validate_names_the_wrong_key(mutate, key):
    space = nas_space()
    cfg = space.sample(np.random.default_rng(6))
    cfg["optimizer"] = "sgd"
    cfg["sgd"] = {"momentum": 0.9, "nesterov": False}
    cfg["stage"] = [{"kernel": 3, "expand": 4} for _ in range(3)]
    mutate(cfg)
    with pytest.raises(SpaceError) as err:
        space.validate(cfg)
    assert err.value.key == key
    assert key in str(err.value)


def test_misspelled_key_suggests_the_right_one():
    space = nas_space()
    cfg = space.sample(np.random.default_rng(7))
    cfg["resolutoin"] = cfg.pop("resolution")
    with pytest.raises(SpaceError, match="did you mean 'resolution'"):
        space.validate(cfg)


def test_bool_choices_do_not_match_integers():
    d = Categorical("flag", [True, False])
    with pytest.raises(SpaceError):
        d.validate(1, "flag")


def test_optuna_define_by_run_matches_the_space():
    import optuna

    space = nas_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert space.validate(cfg) == cfg
        study.tell(trial, 0.0)
        # flatten gives exactly the parameter names Optuna saw
        assert set(space.flatten(cfg)) == set(trial.params)


def test_conditional_group_must_follow_its_condition():
    with pytest.raises(ValueError, match="must be a dimension defined before it"):
        SearchSpace([Group("g", [Float("x", 0, 1)], when={"mode": ["a"]}), Categorical("mode", ["a", "b"])])
