"""The recipe's acceptance tables: rows, the overall mean over scenarios, both scoring regions, NDS and the
95 % intervals where ``eval`` gave them."""

from edgefuse.recipe import EVAL_SCENARIOS, tables


def _scored(maps, fov_maps, mave=1.5):
    return {
        s: {"mAP": m, "mAVE": mave, "camera_fov": {"mAP": f, "mAVE": mave - 0.25}}
        for s, m, f in zip(EVAL_SCENARIOS, maps, fov_maps, strict=True)
    }


def test_tables_show_both_regions_and_the_mean_over_scenarios():
    results = {
        "ablation": {
            "lidar": _scored([0.8, 0.4, 0.8], [0.81, 0.37, 0.81]),
            "all": _scored([0.8, 0.5, None], [0.82, 0.52, 0.8]),
        },
        "runtime": {"no LiDAR": _scored([0.1, 0.1, 0.1], [0.4, 0.4, 0.4])},
    }
    md = tables(results)
    sections = md.split("(a) ")[1:] + md.split("(b) ")[1:]
    assert len(sections) == 4 and "(c)" not in md  # no precision results: no table (c)
    fov_a = md.split("(a) separately trained models, in the camera's field of view")[1].split("(a)")[0]
    grid_a = md.split("(a) separately trained models, over the whole 360° BEV grid")[1].split("(b)")[0]
    # (0.81 + 0.37 + 0.81) / 3 = 0.6633; mAVE in the field of view is 1.25
    assert "| lidar | 81.0 | 37.0 | 81.0 | 66.3 | – | – | – | 1.25 | 1.25 | 1.25 |" in fov_a
    # a scenario without a score is shown as – and left out of the mean: (0.8 + 0.5) / 2
    assert "| all | 80.0 | 50.0 | – | 65.0 | – | – | – | 1.50 | 1.50 | 1.50 |" in grid_a
    assert "| no LiDAR | 40.0 | 40.0 | 40.0 | 40.0 |" in md


def test_tables_show_nds_and_the_intervals():
    r = {"mAP": 0.718, "NDS": 0.6, "mAVE": 0.7, "ci95": {"mAP": [0.682, 0.75], "NDS": [None, None]}}
    per = {s: {**r, "camera_fov": r} for s in EVAL_SCENARIOS}
    md = tables({"ablation": {"all": per}})
    # an interval where there is one, none where it is undefined
    cell = "71.8 [68.2, 75.0]"
    assert f"| all | {cell} | {cell} | {cell} | 71.8 | 60.0 | 60.0 | 60.0 | 0.70 |" in md
