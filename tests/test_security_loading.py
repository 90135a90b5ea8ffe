"""Finding 1 (the loader): random MLmodel files over a real skops model and a pickle whose `__reduce__` makes a marker
folder. Only the safe combination (python_function through mlflow.sklearn + sklearn stored as skops + a model file
inside the folder + a scikit-learn prediction method) loads without an opt-in; nothing ever runs the payload."""
import os, pickle, shutil, uuid
from pathlib import Path
import pytest, yaml
from hypothesis import given, settings, strategies as st, HealthCheck

class Payload:
    "Unpickling this makes the folder `marker`."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.mkdir, (str(self.marker),))

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "A project (no trusted types), a real skops LinearRegression, and a payload pickle."
    import skops.io, pandas as pd
    from sklearn.linear_model import LinearRegression
    root = tmp_path_factory.mktemp("loading")
    (root/"mlops_nb.toml").write_text("")
    X = pd.DataFrame({"distance": [100.0, 500.0, 1000.0]})
    skops.io.dump(LinearRegression().fit(X, X.distance / 8), root/"real.skops")
    marker = root/"pwned"
    (root/"payload.pkl").write_bytes(pickle.dumps(Payload(marker)))
    return root, marker

SAFE_FNS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba", "score")
_text = st.text("abcdefghijklmnopqrstuvwxyz._/", min_size=1, max_size=12)
_pyfunc = st.fixed_dictionaries(
    {"loader_module": st.sampled_from(["mlflow.sklearn", "mlflow.pyfunc.model", "mlflow.pytorch", "mlflow.sklearn.", "os"]) | _text},
    optional={"model_path": st.sampled_from(["model.skops", "model.pkl", "../model.skops", "/etc/model.skops", "a/../../model.skops",
                                             "sub/model.skops", "model.skops\\..\\x"]),
              "predict_fn": st.sampled_from(SAFE_FNS + ("__reduce__", "fit", "eval")),
              "code": st.sampled_from([None, "code"]), "python_model": st.just("python_model.pkl"),
              "data": st.sampled_from(["model.pkl", "model.skops"])})
_sklearn = st.fixed_dictionaries(
    {}, optional={"serialization_format": st.sampled_from(["skops", "pickle", "cloudpickle", "SKOPS", "skops "]) | _text,
                  "pickled_model": st.sampled_from(["model.skops", "model.pkl"]),
                  "skops_trusted_types": st.sampled_from([None, ["builtins.eval"], ["posix.system", "builtins.exec"]])})
_flavors = st.fixed_dictionaries({}, optional={"python_function": _pyfunc | st.none() | st.just("mlflow.sklearn"),
                                               "sklearn": _sklearn | st.none() | st.just([]),
                                               "pytorch": st.just({"model_data": "data", "pickle_module_name": "pickle"}),
                                               "custom": st.dictionaries(_text, _text, max_size=2)})
_mlmodel = st.one_of(st.fixed_dictionaries({"flavors": _flavors}), st.none(), st.lists(_text, max_size=2),
                     st.fixed_dictionaries({"flavors": st.lists(_text, max_size=2) | st.none()}))

def expected_safe(doc)->bool:
    "The rule, written independently of mlops_nb.loading."
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavors, dict): return False
    pf, sk = flavors.get("python_function"), flavors.get("sklearn")
    if not (isinstance(pf, dict) and isinstance(sk, dict)): return False
    path = pf.get("model_path")
    inside = isinstance(path, str) and path in ("model.skops", "model.pkl", "sub/model.skops")
    return (pf.get("loader_module") == "mlflow.sklearn" and sk.get("serialization_format", "pickle") == "skops" and inside
            and pf.get("predict_fn", "predict") in SAFE_FNS)

@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(doc=_mlmodel, pickle_as_skops=st.booleans())
def test_random_mlmodel_files_only_skops_loads_without_opt_in(files, doc, pickle_as_skops, monkeypatch):
    from mlops_nb.loading import load_with_format, model_format, UnsafeModelError
    from mlops_nb.config import MlopsNbError
    root, marker = files
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)   # MLflow's default: pickles allowed
    folder = root/f"m-{uuid.uuid4().hex[:8]}"
    (folder/"sub").mkdir(parents=True)
    real, payload = root/"real.skops", root/"payload.pkl"
    for name in ("model.skops", "sub/model.skops"): shutil.copy(payload if pickle_as_skops else real, folder/name)
    shutil.copy(payload, folder/"model.pkl")
    shutil.copy(payload, folder/"python_model.pkl")
    (folder/"MLmodel").write_text(yaml.safe_dump(doc))
    safe = expected_safe(doc)
    assert model_format(doc).safe == safe, (doc, model_format(doc))
    try:
        model, fmt = load_with_format(str(folder), root=root)
    except UnsafeModelError as e:
        assert not safe and "allow_pickle=True" in str(e), (doc, str(e))
    except MlopsNbError as e:            # safe by its MLmodel, but the file is no skops file (a pickle renamed)
        assert safe and "cannot read the skops file" in str(e), (doc, str(e))
        assert pickle_as_skops or doc["flavors"]["python_function"]["model_path"] == "model.pkl"
    else:
        assert safe and fmt.safe, doc
        if fmt.predict_fn == "predict":
            import pandas as pd
            assert model.predict(pd.DataFrame({"distance": [800.0]})).round(6).tolist() == [100.0]
    finally: shutil.rmtree(folder)
    assert not marker.exists(), f"the payload ran for {doc}"

def test_the_payload_does_run_with_mlflow_and_with_the_opt_in(files, monkeypatch):
    "The control: the same pickle is live, so the test above would see it run."
    import mlflow.sklearn, pandas as pd
    from sklearn.linear_model import LinearRegression
    from mlops_nb.loading import load_model, PICKLE_TAG
    root, marker = files
    X = pd.DataFrame({"distance": [1.0, 2.0]})
    mlflow.sklearn.save_model(LinearRegression().fit(X, X.distance), root/"pickled", serialization_format="pickle")
    (root/"pickled"/"model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    try: load_model(str(root/"pickled"), allow_pickle=True, root=root)   # the payload is no model, but it runs while loading
    except Exception: pass
    assert marker.exists()
    marker.rmdir()
    assert PICKLE_TAG.startswith("mlops_nb.")

def test_skops_loads_when_mlflow_blocks_pickles_and_ignores_the_models_own_trusted_types(files, monkeypatch, tmp_path):
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false blocks every sklearn model in MLflow 3.17; ours still loads skops, with the project's list."
    import mlflow.pyfunc, mlflow.sklearn, operator, pandas as pd
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from mlops_nb.loading import load_model, UnsafeModelError
    root, marker = files
    X = pd.DataFrame({"distance": [1.0, 2.0, 3.0]})
    mlflow.sklearn.save_model(make_pipeline(FunctionTransformer(operator.neg), LinearRegression()).fit(X, X.distance), tmp_path/"m",
                              skops_trusted_types=["_operator.neg"])
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(Exception, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"): mlflow.pyfunc.load_model(str(tmp_path/"m"))
    with pytest.raises(UnsafeModelError, match=r"not trusted: \['_operator.neg'\].*trusted_types"): load_model(str(tmp_path/"m"), root=root)
    project = tmp_path/"project"
    project.mkdir()
    (project/"mlops_nb.toml").write_text('[models]\ntrusted_types = ["_operator.neg"]\n')
    assert load_model(str(tmp_path/"m"), root=project).predict(X).round(6).tolist() == [1.0, 2.0, 3.0]
