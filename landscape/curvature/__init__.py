"""Curvature of the mean loss: matrix-free operators and the solvers that run on them.

Layers inside the package: ``options`` (settings) and ``base`` (the operator base that counts
and records products) -> ``hessian`` (the Hessian operator) -> ``lanczos`` -> the solvers
``eigen``, ``trace``, ``density``; ``ggn`` (Gauss-Newton and Fisher operators on the
Hessian operator's setup) -> ``dense`` (the exact reference), ``views`` (per-batch and
directional), ``spectrum`` (the spectrum file) and ``distributed`` (the operator under
torchrun). Every solver takes a network with its data and ``HessianOptions``, or any
``CurvatureOperator`` (or matrix), and reports its cost in products.
"""
from .base import RECORD_BYTES, CurvatureOperator, GivenOperator, ShiftedOperator
from .dense import dense_hessian
from .density import DensityResult, common_densities, hessian_density, smooth_density
from .distributed import (DistributedHessian, DistributedHessianOperator,
                          serve_hessian_products, shard_range, sharded_hessian_vector_product)
from .eigen import (BOTTOM_TOL, EigenResult, TopEigenpair, extreme_eigenvalues,
                    hessian_eigenvalues, top_eigenpair)
from .ggn import OutputCurvatureOperator
from .hessian import (HessianOperator, check_determinism, hessian_vector_product,
                      stochastic_layers)
from .options import (CURVATURES, DEFAULT_CHUNK, GRAPH_CACHE_BYTES, HVP_METHODS, MODES, HessianOptions,
                      LossArg)
from .spectrum import SPECTRUM_FORMAT, SPECTRUM_FORMAT_VERSION, load_spectrum, spectrum_record
from .trace import TraceResult, hessian_trace
from .views import BatchSpread, directional_curvature, per_batch_top_eigenvalue

__all__ = [
    # operators
    "CurvatureOperator", "GivenOperator", "ShiftedOperator", "HessianOperator",
    "OutputCurvatureOperator", "CURVATURES",
    "HessianOptions", "hessian_vector_product", "check_determinism", "stochastic_layers",
    "DEFAULT_CHUNK", "GRAPH_CACHE_BYTES", "HVP_METHODS", "MODES", "RECORD_BYTES", "LossArg",
    # solvers and their results
    "hessian_eigenvalues", "EigenResult", "BOTTOM_TOL", "extreme_eigenvalues",
    "top_eigenpair", "TopEigenpair", "hessian_trace", "TraceResult", "hessian_density",
    "DensityResult", "smooth_density", "common_densities", "dense_hessian",
    # views
    "per_batch_top_eigenvalue", "BatchSpread", "directional_curvature",
    # spectrum files
    "spectrum_record", "load_spectrum", "SPECTRUM_FORMAT", "SPECTRUM_FORMAT_VERSION",
    # under torchrun
    "DistributedHessianOperator", "DistributedHessian", "serve_hessian_products",
    "sharded_hessian_vector_product", "shard_range",
]
