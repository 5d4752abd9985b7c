from multishap.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BudgetUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_UNIT_COALITIONS: _ClassVar[BudgetUnit]
    BUDGET_UNIT_COST: _ClassVar[BudgetUnit]
BUDGET_UNIT_COALITIONS: BudgetUnit
BUDGET_UNIT_COST: BudgetUnit

class ListTargetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TargetInfo(_message.Message):
    __slots__ = ("name", "addresses", "model_id", "score_semantics", "reachable", "caps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    model_id: str
    score_semantics: str
    reachable: bool
    caps: _common_pb2.SpendingCaps
    def __init__(self, name: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., model_id: _Optional[str] = ..., score_semantics: _Optional[str] = ..., reachable: _Optional[bool] = ..., caps: _Optional[_Union[_common_pb2.SpendingCaps, _Mapping]] = ...) -> None: ...

class ListTargetsResponse(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[TargetInfo]
    def __init__(self, targets: _Optional[_Iterable[_Union[TargetInfo, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("target", "instance", "method", "budget", "seed", "index", "dry_run", "target_stderr", "budget_unit", "check", "influence_budget", "faithfulness", "role")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TARGET_STDERR_FIELD_NUMBER: _ClassVar[int]
    BUDGET_UNIT_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    target: str
    instance: _common_pb2.Instance
    method: str
    budget: int
    seed: int
    index: str
    dry_run: bool
    target_stderr: float
    budget_unit: BudgetUnit
    check: AnswerCheck
    influence_budget: int
    faithfulness: bool
    role: str
    def __init__(self, target: _Optional[str] = ..., instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., method: _Optional[str] = ..., budget: _Optional[int] = ..., seed: _Optional[int] = ..., index: _Optional[str] = ..., dry_run: _Optional[bool] = ..., target_stderr: _Optional[float] = ..., budget_unit: _Optional[_Union[BudgetUnit, str]] = ..., check: _Optional[_Union[AnswerCheck, _Mapping]] = ..., influence_budget: _Optional[int] = ..., faithfulness: _Optional[bool] = ..., role: _Optional[str] = ...) -> None: ...

class AnswerCheck(_message.Message):
    __slots__ = ("candidates", "ground_truth")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedScalarFieldContainer[str]
    ground_truth: str
    def __init__(self, candidates: _Optional[_Iterable[str]] = ..., ground_truth: _Optional[str] = ...) -> None: ...

class ModelAnswer(_message.Message):
    __slots__ = ("answer", "raw", "how", "candidates", "scores", "ground_truth", "judged", "correct", "error")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    answer: str
    raw: str
    how: str
    candidates: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    ground_truth: str
    judged: bool
    correct: bool
    error: str
    def __init__(self, answer: _Optional[str] = ..., raw: _Optional[str] = ..., how: _Optional[str] = ..., candidates: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ..., ground_truth: _Optional[str] = ..., judged: _Optional[bool] = ..., correct: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ModalityInfluence(_message.Message):
    __slots__ = ("patch_shapley_with_text", "patch_shapley_without_text", "token_shapley_with_image", "token_shapley_without_image", "image_on_text", "text_on_image", "redundancy_flag", "evaluations", "exact")
    PATCH_SHAPLEY_WITH_TEXT_FIELD_NUMBER: _ClassVar[int]
    PATCH_SHAPLEY_WITHOUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHAPLEY_WITH_IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHAPLEY_WITHOUT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ON_TEXT_FIELD_NUMBER: _ClassVar[int]
    TEXT_ON_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REDUNDANCY_FLAG_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    patch_shapley_with_text: _containers.RepeatedScalarFieldContainer[float]
    patch_shapley_without_text: _containers.RepeatedScalarFieldContainer[float]
    token_shapley_with_image: _containers.RepeatedScalarFieldContainer[float]
    token_shapley_without_image: _containers.RepeatedScalarFieldContainer[float]
    image_on_text: float
    text_on_image: float
    redundancy_flag: bool
    evaluations: int
    exact: bool
    def __init__(self, patch_shapley_with_text: _Optional[_Iterable[float]] = ..., patch_shapley_without_text: _Optional[_Iterable[float]] = ..., token_shapley_with_image: _Optional[_Iterable[float]] = ..., token_shapley_without_image: _Optional[_Iterable[float]] = ..., image_on_text: _Optional[float] = ..., text_on_image: _Optional[float] = ..., redundancy_flag: _Optional[bool] = ..., evaluations: _Optional[int] = ..., exact: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("evaluations", "budget", "elapsed_seconds", "eta_seconds", "cost", "cost_unit", "budget_unit")
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    COST_UNIT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_UNIT_FIELD_NUMBER: _ClassVar[int]
    evaluations: int
    budget: int
    elapsed_seconds: float
    eta_seconds: float
    cost: float
    cost_unit: str
    budget_unit: BudgetUnit
    def __init__(self, evaluations: _Optional[int] = ..., budget: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., cost: _Optional[float] = ..., cost_unit: _Optional[str] = ..., budget_unit: _Optional[_Union[BudgetUnit, str]] = ...) -> None: ...

class InstanceMetrics(_message.Message):
    __slots__ = ("total", "synergy", "suppression", "synergy_ratio")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SYNERGY_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSION_FIELD_NUMBER: _ClassVar[int]
    SYNERGY_RATIO_FIELD_NUMBER: _ClassVar[int]
    total: float
    synergy: float
    suppression: float
    synergy_ratio: float
    def __init__(self, total: _Optional[float] = ..., synergy: _Optional[float] = ..., suppression: _Optional[float] = ..., synergy_ratio: _Optional[float] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("phi", "stderr", "tokens", "grid", "metrics", "shapley", "v_full", "v_empty", "v_image_only", "v_text_only", "modality_interaction", "evaluations", "seconds", "seed", "method", "index", "budget", "target", "usage", "dry_run", "cost", "cost_unit", "budget_unit", "target_stderr", "target_stderr_reached", "answer", "influence", "faithfulness", "role")
    PHI_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SHAPLEY_FIELD_NUMBER: _ClassVar[int]
    V_FULL_FIELD_NUMBER: _ClassVar[int]
    V_EMPTY_FIELD_NUMBER: _ClassVar[int]
    V_IMAGE_ONLY_FIELD_NUMBER: _ClassVar[int]
    V_TEXT_ONLY_FIELD_NUMBER: _ClassVar[int]
    MODALITY_INTERACTION_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    COST_UNIT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_UNIT_FIELD_NUMBER: _ClassVar[int]
    TARGET_STDERR_FIELD_NUMBER: _ClassVar[int]
    TARGET_STDERR_REACHED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    phi: _common_pb2.Matrix
    stderr: _common_pb2.Matrix
    tokens: _containers.RepeatedScalarFieldContainer[str]
    grid: _common_pb2.Grid
    metrics: InstanceMetrics
    shapley: _containers.RepeatedScalarFieldContainer[float]
    v_full: float
    v_empty: float
    v_image_only: float
    v_text_only: float
    modality_interaction: float
    evaluations: int
    seconds: float
    seed: int
    method: str
    index: str
    budget: int
    target: TargetInfo
    usage: _common_pb2.Usage
    dry_run: bool
    cost: float
    cost_unit: str
    budget_unit: BudgetUnit
    target_stderr: float
    target_stderr_reached: bool
    answer: ModelAnswer
    influence: ModalityInfluence
    faithfulness: FaithfulnessResult
    role: str
    def __init__(self, phi: _Optional[_Union[_common_pb2.Matrix, _Mapping]] = ..., stderr: _Optional[_Union[_common_pb2.Matrix, _Mapping]] = ..., tokens: _Optional[_Iterable[str]] = ..., grid: _Optional[_Union[_common_pb2.Grid, _Mapping]] = ..., metrics: _Optional[_Union[InstanceMetrics, _Mapping]] = ..., shapley: _Optional[_Iterable[float]] = ..., v_full: _Optional[float] = ..., v_empty: _Optional[float] = ..., v_image_only: _Optional[float] = ..., v_text_only: _Optional[float] = ..., modality_interaction: _Optional[float] = ..., evaluations: _Optional[int] = ..., seconds: _Optional[float] = ..., seed: _Optional[int] = ..., method: _Optional[str] = ..., index: _Optional[str] = ..., budget: _Optional[int] = ..., target: _Optional[_Union[TargetInfo, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., dry_run: _Optional[bool] = ..., cost: _Optional[float] = ..., cost_unit: _Optional[str] = ..., budget_unit: _Optional[_Union[BudgetUnit, str]] = ..., target_stderr: _Optional[float] = ..., target_stderr_reached: _Optional[bool] = ..., answer: _Optional[_Union[ModelAnswer, _Mapping]] = ..., influence: _Optional[_Union[ModalityInfluence, _Mapping]] = ..., faithfulness: _Optional[_Union[FaithfulnessResult, _Mapping]] = ..., role: _Optional[str] = ...) -> None: ...

class ExplainEvent(_message.Message):
    __slots__ = ("progress", "explanation")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    explanation: Explanation
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ...) -> None: ...

class FaithfulnessRequest(_message.Message):
    __slots__ = ("target", "instance", "patch_scores", "token_scores", "explainer", "steps", "eps", "macro_game", "chunks", "seed", "budget")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PATCH_SCORES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SCORES_FIELD_NUMBER: _ClassVar[int]
    EXPLAINER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    MACRO_GAME_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    instance: _common_pb2.Instance
    patch_scores: _containers.RepeatedScalarFieldContainer[float]
    token_scores: _containers.RepeatedScalarFieldContainer[float]
    explainer: str
    steps: int
    eps: float
    macro_game: bool
    chunks: int
    seed: int
    budget: int
    def __init__(self, target: _Optional[str] = ..., instance: _Optional[_Union[_common_pb2.Instance, _Mapping]] = ..., patch_scores: _Optional[_Iterable[float]] = ..., token_scores: _Optional[_Iterable[float]] = ..., explainer: _Optional[str] = ..., steps: _Optional[int] = ..., eps: _Optional[float] = ..., macro_game: _Optional[bool] = ..., chunks: _Optional[int] = ..., seed: _Optional[int] = ..., budget: _Optional[int] = ...) -> None: ...

class UnimodalResult(_message.Message):
    __slots__ = ("insertion", "deletion", "srg", "curve_ins", "curve_del")
    INSERTION_FIELD_NUMBER: _ClassVar[int]
    DELETION_FIELD_NUMBER: _ClassVar[int]
    SRG_FIELD_NUMBER: _ClassVar[int]
    CURVE_INS_FIELD_NUMBER: _ClassVar[int]
    CURVE_DEL_FIELD_NUMBER: _ClassVar[int]
    insertion: float
    deletion: float
    srg: float
    curve_ins: _containers.RepeatedScalarFieldContainer[float]
    curve_del: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, insertion: _Optional[float] = ..., deletion: _Optional[float] = ..., srg: _Optional[float] = ..., curve_ins: _Optional[_Iterable[float]] = ..., curve_del: _Optional[_Iterable[float]] = ...) -> None: ...

class FaithfulnessResult(_message.Message):
    __slots__ = ("f_syn", "f_ins", "f_del", "f_syn_unclipped", "f_syn_raw", "alphas", "curve_ins", "curve_del", "visual", "text", "macro_per_step", "macro_auc", "evaluations", "patch_scores", "token_scores", "tokens", "seconds", "target", "usage")
    F_SYN_FIELD_NUMBER: _ClassVar[int]
    F_INS_FIELD_NUMBER: _ClassVar[int]
    F_DEL_FIELD_NUMBER: _ClassVar[int]
    F_SYN_UNCLIPPED_FIELD_NUMBER: _ClassVar[int]
    F_SYN_RAW_FIELD_NUMBER: _ClassVar[int]
    ALPHAS_FIELD_NUMBER: _ClassVar[int]
    CURVE_INS_FIELD_NUMBER: _ClassVar[int]
    CURVE_DEL_FIELD_NUMBER: _ClassVar[int]
    VISUAL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MACRO_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    MACRO_AUC_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    PATCH_SCORES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SCORES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    f_syn: float
    f_ins: float
    f_del: float
    f_syn_unclipped: float
    f_syn_raw: float
    alphas: _containers.RepeatedScalarFieldContainer[float]
    curve_ins: _containers.RepeatedScalarFieldContainer[float]
    curve_del: _containers.RepeatedScalarFieldContainer[float]
    visual: UnimodalResult
    text: UnimodalResult
    macro_per_step: _containers.RepeatedScalarFieldContainer[float]
    macro_auc: float
    evaluations: int
    patch_scores: _containers.RepeatedScalarFieldContainer[float]
    token_scores: _containers.RepeatedScalarFieldContainer[float]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    seconds: float
    target: TargetInfo
    usage: _common_pb2.Usage
    def __init__(self, f_syn: _Optional[float] = ..., f_ins: _Optional[float] = ..., f_del: _Optional[float] = ..., f_syn_unclipped: _Optional[float] = ..., f_syn_raw: _Optional[float] = ..., alphas: _Optional[_Iterable[float]] = ..., curve_ins: _Optional[_Iterable[float]] = ..., curve_del: _Optional[_Iterable[float]] = ..., visual: _Optional[_Union[UnimodalResult, _Mapping]] = ..., text: _Optional[_Union[UnimodalResult, _Mapping]] = ..., macro_per_step: _Optional[_Iterable[float]] = ..., macro_auc: _Optional[float] = ..., evaluations: _Optional[int] = ..., patch_scores: _Optional[_Iterable[float]] = ..., token_scores: _Optional[_Iterable[float]] = ..., tokens: _Optional[_Iterable[str]] = ..., seconds: _Optional[float] = ..., target: _Optional[_Union[TargetInfo, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class FaithfulnessEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: FaithfulnessResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[FaithfulnessResult, _Mapping]] = ...) -> None: ...
