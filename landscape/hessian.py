"""Deprecated location, kept for one release: use landscape.curvature.

Re-exports every name code imported from ``landscape.hessian``, private ones included
(``_Shifted``, ``_extreme_lanczos``, ``_smooth`` under their old names). Module constants are
copies: to change one for the solvers (e.g. ``RECORD_BYTES`` in a test), set it where it is
read, ``landscape.curvature.base.RECORD_BYTES``.
"""
from .curvature import (BOTTOM_TOL, DEFAULT_CHUNK, GRAPH_CACHE_BYTES, HVP_METHODS, MODES,
                        RECORD_BYTES, SPECTRUM_FORMAT, SPECTRUM_FORMAT_VERSION, BatchSpread,
                        DensityResult, DistributedHessian, DistributedHessianOperator,
                        EigenResult, HessianOperator, HessianOptions, LossArg, TopEigenpair,
                        TraceResult, check_determinism, common_densities, dense_hessian,
                        directional_curvature, extreme_eigenvalues, hessian_density,
                        hessian_eigenvalues, hessian_trace, hessian_vector_product,
                        load_spectrum, per_batch_top_eigenvalue, serve_hessian_products,
                        shard_range, sharded_hessian_vector_product, spectrum_record,
                        stochastic_layers, top_eigenpair)
from .curvature.base import ShiftedOperator as _Shifted
from .curvature.density import smooth_density as _smooth
from .curvature.lanczos import extreme_lanczos as _extreme_lanczos

__all__ = [
    "BOTTOM_TOL", "DEFAULT_CHUNK", "GRAPH_CACHE_BYTES", "HVP_METHODS", "MODES", "RECORD_BYTES",
    "SPECTRUM_FORMAT", "SPECTRUM_FORMAT_VERSION", "BatchSpread", "DensityResult",
    "DistributedHessian", "DistributedHessianOperator", "EigenResult", "HessianOperator",
    "HessianOptions", "LossArg", "TopEigenpair", "TraceResult", "check_determinism",
    "common_densities", "dense_hessian", "directional_curvature", "extreme_eigenvalues",
    "hessian_density", "hessian_eigenvalues", "hessian_trace", "hessian_vector_product",
    "load_spectrum", "per_batch_top_eigenvalue", "serve_hessian_products", "shard_range",
    "sharded_hessian_vector_product", "spectrum_record", "stochastic_layers", "top_eigenpair",
    "_Shifted", "_smooth", "_extreme_lanczos",
]
