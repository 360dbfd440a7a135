"""Python twins of the CLI commands: the public face of :mod:`tmescope.jobs`.

The CLI only parses arguments and prints; everything it does can be done from here. Each name
loads its job module on first use, so importing this module is cheap and a command pays only
for the job it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name → the module that defines it.
_LAZY = {
    "describe_encoders": "tmescope.embed.registry",
    "DemoResult": "tmescope.jobs.demo",
    "run_demo": "tmescope.jobs.demo",
    "CompareReport": "tmescope.jobs.compare",
    "CompareSettings": "tmescope.jobs.compare",
    "compare_adatas": "tmescope.jobs.compare",
    "one_hot_types": "tmescope.jobs.compare",
    "run_compare": "tmescope.jobs.compare",
    "EmbedInput": "tmescope.jobs.embed",
    "EmbedSettings": "tmescope.jobs.embed",
    "EmbedSummary": "tmescope.jobs.embed",
    "TableInput": "tmescope.jobs.embed",
    "embed_input": "tmescope.jobs.embed",
    "EvaluateSettings": "tmescope.jobs.evaluate",
    "evaluate_sample": "tmescope.jobs.evaluate",
    "PseudospotSettings": "tmescope.jobs.pseudospots",
    "make_pseudospots": "tmescope.jobs.pseudospots",
    "pseudospots_from_file": "tmescope.jobs.pseudospots",
    "ProgressReporter": "tmescope.jobs.embed",
    "SampleInput": "tmescope.jobs.embed",
    "SlideInput": "tmescope.jobs.embed",
    "embed_sample_into_store": "tmescope.jobs.embed",
    "embed_samples": "tmescope.jobs.embed",
    "read_samplesheet": "tmescope.jobs.embed_sheet",
    "samplesheet_inputs": "tmescope.jobs.embed_sheet",
    "ExportSummary": "tmescope.jobs.export",
    "export_store": "tmescope.jobs.export",
    "write_fused": "tmescope.jobs.fused",
    "build_cohort_index": "tmescope.jobs.index",
    "describe_sample": "tmescope.jobs.info",
    "sample_summary": "tmescope.jobs.info",
    "InteractionReport": "tmescope.jobs.interactions",
    "InteractionSettings": "tmescope.jobs.interactions",
    "run_interactions": "tmescope.jobs.interactions",
    "InterfaceReport": "tmescope.jobs.interfaces",
    "InterfaceSettings": "tmescope.jobs.interfaces",
    "run_interfaces": "tmescope.jobs.interfaces",
    "adata_pair_statistics": "tmescope.jobs.interfaces",
    "adata_interface_maps": "tmescope.jobs.interfaces",
    "NicheReport": "tmescope.jobs.niches",
    "find_niches": "tmescope.jobs.niches",
    "predict_sample": "tmescope.jobs.predict",
    "PredictSummary": "tmescope.jobs.predict_cohort",
    "predict_samples": "tmescope.jobs.predict_cohort",
    "predict_subspot": "tmescope.jobs.predict_bins",
    "subspot_anndata": "tmescope.jobs.predict_bins",
    "embed_query_image": "tmescope.jobs.query",
    "query_store": "tmescope.jobs.query",
    "write_query_gallery": "tmescope.jobs.query",
    "write_report": "tmescope.jobs.report",
    "analysis_sections": "tmescope.jobs.report_sections",
    "interaction_section": "tmescope.jobs.report_sections",
    "niche_section": "tmescope.jobs.report_sections",
    "make_app": "tmescope.jobs.serve",
    "serve": "tmescope.jobs.serve",
    "remove_samples": "tmescope.jobs.store",
    "store_info": "tmescope.jobs.store",
    "store_summary": "tmescope.jobs.store",
    "verify_store": "tmescope.jobs.store",
    "cohort_samplesheet": "tmescope.jobs.synth",
    "fullres_image_of": "tmescope.jobs.synth",
    "synthesize_cohort": "tmescope.jobs.synth",
    "TrainResult": "tmescope.jobs.train",
    "TrainSettings": "tmescope.jobs.train",
    "parse_models": "tmescope.jobs.train",
    "train_model": "tmescope.jobs.train",
}

__all__ = [
    "CompareReport",
    "CompareSettings",
    "DemoResult",
    "EmbedInput",
    "EmbedSettings",
    "EmbedSummary",
    "EvaluateSettings",
    "ExportSummary",
    "InteractionReport",
    "InteractionSettings",
    "InterfaceReport",
    "InterfaceSettings",
    "NicheReport",
    "PredictSummary",
    "ProgressReporter",
    "PseudospotSettings",
    "SampleInput",
    "SlideInput",
    "TableInput",
    "TrainResult",
    "TrainSettings",
    "adata_interface_maps",
    "adata_pair_statistics",
    "analysis_sections",
    "build_cohort_index",
    "cohort_samplesheet",
    "compare_adatas",
    "describe_encoders",
    "describe_sample",
    "embed_input",
    "embed_query_image",
    "embed_sample_into_store",
    "embed_samples",
    "evaluate_sample",
    "export_store",
    "find_niches",
    "fullres_image_of",
    "interaction_section",
    "make_app",
    "make_pseudospots",
    "niche_section",
    "one_hot_types",
    "parse_models",
    "predict_sample",
    "predict_samples",
    "predict_subspot",
    "pseudospots_from_file",
    "query_store",
    "read_samplesheet",
    "remove_samples",
    "run_compare",
    "run_demo",
    "run_interactions",
    "run_interfaces",
    "sample_summary",
    "samplesheet_inputs",
    "serve",
    "store_info",
    "store_summary",
    "subspot_anndata",
    "synthesize_cohort",
    "train_model",
    "verify_store",
    "write_fused",
    "write_query_gallery",
    "write_report",
]

if TYPE_CHECKING:
    from tmescope.embed.registry import describe_encoders
    from tmescope.jobs.compare import (
        CompareReport,
        CompareSettings,
        compare_adatas,
        one_hot_types,
        run_compare,
    )
    from tmescope.jobs.demo import DemoResult, run_demo
    from tmescope.jobs.embed import (
        EmbedInput,
        EmbedSettings,
        EmbedSummary,
        ProgressReporter,
        SampleInput,
        SlideInput,
        TableInput,
        embed_input,
        embed_sample_into_store,
        embed_samples,
    )
    from tmescope.jobs.embed_sheet import read_samplesheet, samplesheet_inputs
    from tmescope.jobs.evaluate import EvaluateSettings, evaluate_sample
    from tmescope.jobs.export import ExportSummary, export_store
    from tmescope.jobs.fused import write_fused
    from tmescope.jobs.index import build_cohort_index
    from tmescope.jobs.info import describe_sample, sample_summary
    from tmescope.jobs.interactions import InteractionReport, InteractionSettings, run_interactions
    from tmescope.jobs.interfaces import (
        InterfaceReport,
        InterfaceSettings,
        adata_interface_maps,
        adata_pair_statistics,
        run_interfaces,
    )
    from tmescope.jobs.niches import NicheReport, find_niches
    from tmescope.jobs.predict import predict_sample
    from tmescope.jobs.predict_bins import predict_subspot, subspot_anndata
    from tmescope.jobs.predict_cohort import PredictSummary, predict_samples
    from tmescope.jobs.pseudospots import (
        PseudospotSettings,
        make_pseudospots,
        pseudospots_from_file,
    )
    from tmescope.jobs.query import embed_query_image, query_store, write_query_gallery
    from tmescope.jobs.report import write_report
    from tmescope.jobs.report_sections import analysis_sections, interaction_section, niche_section
    from tmescope.jobs.serve import make_app, serve
    from tmescope.jobs.store import remove_samples, store_info, store_summary, verify_store
    from tmescope.jobs.synth import cohort_samplesheet, fullres_image_of, synthesize_cohort
    from tmescope.jobs.train import TrainResult, TrainSettings, parse_models, train_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tmescope.workflows' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
