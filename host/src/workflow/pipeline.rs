//! Declarative pipelines: a YAML file of stages that becomes one step
//! graph (`prism workflow run pipeline.yaml`).
//!
//! ```yaml
//! name: many-models
//! config: {cities: 6, models: 5, targets: 6}
//! stages:
//!   - name: collect
//!     function: collect
//!     args: ["${config.cities}", "${config.models}", "${config.targets}"]
//!   - name: train
//!     function: train
//!     type: parameterized        # one step per element of `collect`'s list
//!     depends_on: [collect]
//!     resources: {num_cpus: 0.5}
//!   - name: predict
//!     function: predict
//!     depends_on: [train]
//! ```
//!
//! A stage's `args` are JSON values in which the strings `${config.KEY}`
//! (a value of the shared `config`), `${config}` (all of it) and
//! `${stages.NAME}` (a stage's output) are replaced. Without `args`, a
//! stage takes the outputs of its `depends_on` stages, in order. A
//! `parameterized` stage fans out over the list its `over` stage (default:
//! its first `depends_on`) outputs: each element, then its `args`, are
//! one step's arguments; its output is the list of their outputs. The
//! last stage's output is the workflow's output; every stage runs.

use prism_abi::workflow::{StepKind, StepNode, StepOptions};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Largest pipeline file (1 MiB).
pub const MAX_PIPELINE_BYTES: usize = 1 << 20;
/// Most stages in a pipeline (256).
pub const MAX_STAGES: usize = 256;
/// Largest encoded step of a stage, its dependencies included (4 MiB):
/// stages that depend on many others embed them, so a small file could
/// otherwise describe an enormous graph.
pub const MAX_STAGE_BYTES: usize = 4 << 20;

/// A pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Its name (the default workflow id's prefix).
    #[serde(default)]
    pub name: Option<String>,
    /// The module (a path for the CLI; the API takes the digest).
    #[serde(default)]
    pub module: Option<String>,
    /// Values every stage may read (`${config.KEY}`).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The stages, each after the ones it depends on.
    pub stages: Vec<Stage>,
}

/// One stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Its name (its step's name), unique.
    pub name: String,
    /// The task it runs.
    pub function: String,
    /// `task` (default) or `parameterized`.
    #[serde(default, rename = "type")]
    pub kind: StageKind,
    /// Stages that must end before it.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// For a parameterized stage, the stage whose list it fans out over
    /// (default: its first `depends_on`).
    #[serde(default)]
    pub over: Option<String>,
    /// Its arguments (see the module).
    #[serde(default)]
    pub args: Option<Vec<serde_json::Value>>,
    /// What each of its steps holds while it runs.
    #[serde(default)]
    pub resources: Resources,
    /// Retries after a failure (default 3).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Deadline per attempt, in seconds (default: the node's).
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// A stage's kind.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    /// One step.
    #[default]
    Task,
    /// One step per element of a list.
    Parameterized,
}

/// What a step holds while it runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs (fractional; default 1).
    #[serde(default)]
    pub num_cpus: Option<f64>,
    /// GPUs (fractional; default 0).
    #[serde(default)]
    pub num_gpus: Option<f64>,
    /// Memory in bytes (default: none reserved).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Custom resources.
    #[serde(default)]
    pub custom: BTreeMap<String, f64>,
}

/// Why a pipeline is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("pipeline: {0}")]
pub struct PipelineError(pub String);

fn error(message: impl Into<String>) -> PipelineError {
    PipelineError(message.into())
}

impl Pipeline {
    /// Reads a pipeline file.
    pub fn parse(yaml: &str) -> Result<Pipeline, PipelineError> {
        if yaml.len() > MAX_PIPELINE_BYTES {
            return Err(error(format!(
                "the file is {} bytes, more than {MAX_PIPELINE_BYTES}",
                yaml.len()
            )));
        }
        let pipeline: Pipeline = serde_saphyr::from_str(yaml).map_err(|e| error(e.to_string()))?;
        if pipeline.stages.is_empty() {
            return Err(error("it has no stages"));
        }
        if pipeline.stages.len() > MAX_STAGES {
            return Err(error(format!("more than {MAX_STAGES} stages")));
        }
        Ok(pipeline)
    }

    /// The pipeline as one step graph: the last stage, after all others.
    pub fn root(&self) -> Result<StepNode, PipelineError> {
        let mut built: HashMap<&str, StepNode> = HashMap::new();
        for stage in &self.stages {
            super::graph::check_name(&stage.name).map_err(|e| error(e.to_string()))?;
            if built.contains_key(stage.name.as_str()) {
                return Err(error(format!("two stages are named {}", stage.name)));
            }
            let node = self.stage_node(stage, &built)?;
            let size = node.encode().len();
            if size > MAX_STAGE_BYTES {
                return Err(error(format!(
                    "stage {} with its dependencies is {size} bytes encoded, more than {MAX_STAGE_BYTES}",
                    stage.name
                )));
            }
            built.insert(&stage.name, node);
        }
        let last = self
            .stages
            .last()
            .map(|s| s.name.as_str())
            .unwrap_or_default();
        let mut root = built.remove(last).ok_or_else(|| error("no last stage"))?;
        for stage in &self.stages[..self.stages.len() - 1] {
            if let Some(node) = built.get(stage.name.as_str()) {
                root.after.push(node.encode());
            }
        }
        Ok(root)
    }

    fn stage_node(
        &self,
        stage: &Stage,
        built: &HashMap<&str, StepNode>,
    ) -> Result<StepNode, PipelineError> {
        let dependency = |name: &str| {
            built.get(name).ok_or_else(|| {
                error(format!(
                    "stage {} depends on {name}, which is not an earlier stage",
                    stage.name
                ))
            })
        };
        for name in &stage.depends_on {
            dependency(name)?;
        }
        let mut args: Vec<Vec<u8>> = match &stage.args {
            Some(args) => args
                .iter()
                .map(|a| self.template(a, built, &stage.name))
                .collect::<Result<_, _>>()?,
            None if stage.kind == StageKind::Parameterized => Vec::new(),
            None => stage
                .depends_on
                .iter()
                .map(|d| dependency(d).map(StepNode::to_value_bytes))
                .collect::<Result<_, _>>()?,
        };
        let kind = match stage.kind {
            StageKind::Task => StepKind::Task {
                function: stage.function.clone(),
            },
            StageKind::Parameterized => {
                let over = stage
                    .over
                    .as_deref()
                    .or(stage.depends_on.first().map(String::as_str))
                    .ok_or_else(|| {
                        error(format!(
                            "parameterized stage {} names no stage to fan out over (over or depends_on)",
                            stage.name
                        ))
                    })?;
                args.insert(0, dependency(over)?.to_value_bytes());
                StepKind::ForEach {
                    function: stage.function.clone(),
                }
            }
        };
        let mut task = prism_abi::TaskOptions {
            num_cpus: stage.resources.num_cpus,
            num_gpus: stage.resources.num_gpus,
            memory: stage.resources.memory,
            resources: stage.resources.custom.clone(),
            ..Default::default()
        };
        task.timeout_ms = stage.timeout_s.map(|s| s.saturating_mul(1000));
        let mut node = StepNode {
            kind,
            args,
            after: Vec::new(),
            options: StepOptions {
                name: Some(stage.name.clone()),
                max_retries: stage.max_retries,
                catch_exceptions: false,
                task,
            },
        };
        // Dependencies whose outputs it does not take still come first.
        for name in &stage.depends_on {
            let dep = dependency(name)?;
            let used = node.args.iter().any(|a| *a == dep.to_value_bytes());
            if !used {
                node.after.push(dep.encode());
            }
        }
        Ok(node)
    }

    /// One argument: a JSON value with its `${…}` strings replaced.
    fn template(
        &self,
        value: &serde_json::Value,
        built: &HashMap<&str, StepNode>,
        stage: &str,
    ) -> Result<Vec<u8>, PipelineError> {
        let value = self.substitute(value, built, stage, 0)?;
        Ok(super::graph::write(&value))
    }

    fn substitute(
        &self,
        value: &serde_json::Value,
        built: &HashMap<&str, StepNode>,
        stage: &str,
        depth: usize,
    ) -> Result<rmpv::Value, PipelineError> {
        use serde_json::Value as J;
        if depth > super::graph::MAX_DEPTH {
            return Err(error(format!(
                "stage {stage}: an argument is nested too deeply"
            )));
        }
        Ok(match value {
            J::String(text) => match text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
                Some("config") => json_to_msgpack(&J::Object(self.config.clone())),
                Some(reference) => {
                    if let Some(key) = reference.strip_prefix("config.") {
                        let found = self.config.get(key).ok_or_else(|| {
                            error(format!("stage {stage}: config has no key {key}"))
                        })?;
                        json_to_msgpack(found)
                    } else if let Some(name) = reference.strip_prefix("stages.") {
                        let node = built.get(name).ok_or_else(|| {
                            error(format!("stage {stage}: no earlier stage {name}"))
                        })?;
                        rmpv::Value::Ext(prism_abi::workflow::STEP_EXT, node.encode())
                    } else {
                        return Err(error(format!(
                            "stage {stage}: unknown reference ${{{reference}}} (use config.KEY or stages.NAME)"
                        )));
                    }
                }
                None => rmpv::Value::from(text.as_str()),
            },
            J::Array(items) => rmpv::Value::Array(
                items
                    .iter()
                    .map(|v| self.substitute(v, built, stage, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => rmpv::Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        Ok((
                            rmpv::Value::from(k.as_str()),
                            self.substitute(v, built, stage, depth + 1)?,
                        ))
                    })
                    .collect::<Result<_, PipelineError>>()?,
            ),
            other => json_to_msgpack(other),
        })
    }
}

fn json_to_msgpack(value: &serde_json::Value) -> rmpv::Value {
    let bytes = prism_abi::encode_value(value).unwrap_or_default();
    super::graph::parse(&bytes).unwrap_or(rmpv::Value::Nil)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::graph::{self, Slot};

    const MANY_MODELS: &str = include_str!("../../../guest-examples/workflows/many-models.yaml");

    fn steps_in(arg: &[u8]) -> Vec<StepNode> {
        graph::slots(&graph::parse(arg).unwrap())
            .unwrap()
            .into_iter()
            .filter_map(|s| match s {
                Slot::Step(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_staged_pipeline_becomes_one_graph() {
        let pipeline = Pipeline::parse(MANY_MODELS).unwrap();
        let root = pipeline.root().unwrap();
        assert_eq!(root.options.name.as_deref(), Some("predict"));
        // predict takes train's output; train fans out over collect's.
        let train = steps_in(&root.args[0]).remove(0);
        assert_eq!(train.options.name.as_deref(), Some("train"));
        assert_eq!(
            train.kind,
            StepKind::ForEach {
                function: "train".into()
            }
        );
        assert_eq!(train.options.task.num_cpus, Some(0.5));
        let collect = steps_in(&train.args[0]).remove(0);
        assert_eq!(collect.options.name.as_deref(), Some("collect"));
        assert_eq!(
            graph::parse(&collect.args[0]).unwrap(),
            rmpv::Value::from(6)
        );
        // Every other stage runs before the last.
        assert_eq!(root.after.len(), 2);
    }

    #[test]
    fn bad_pipelines_are_refused_with_the_reason() {
        for (yaml, why) in [
            ("stages: []", "no stages"),
            (
                "stages: [{name: a, function: f, depends_on: [b]}]",
                "not an earlier stage",
            ),
            (
                "stages: [{name: a, function: f}, {name: a, function: g}]",
                "two stages",
            ),
            (
                "stages: [{name: a, function: f, type: parameterized}]",
                "fan out",
            ),
            (
                "stages: [{name: a, function: f, args: ['${config.x}']}]",
                "no key x",
            ),
            (
                "stages: [{name: a, function: f, args: ['${nope}']}]",
                "unknown reference",
            ),
            ("stages: [{name: 'a/b', function: f}]", "not valid"),
            ("stages: [{name: a, function: f, bogus: 1}]", "bogus"),
            ("stages: {", ""),
        ] {
            let err = Pipeline::parse(yaml).and_then(|p| p.root()).unwrap_err();
            assert!(err.0.contains(why), "{yaml}: {err}");
        }
        // Each stage embeds the two before it: a small file, a graph that
        // would double with every stage.
        let mut doubling = String::from(
            "stages:\n  - {name: s0, function: f}\n  - {name: s1, function: f, depends_on: [s0]}\n",
        );
        for i in 2..60 {
            doubling.push_str(&format!(
                "  - {{name: s{i}, function: f, depends_on: [s{}, s{}]}}\n",
                i - 1,
                i - 2
            ));
        }
        let err = Pipeline::parse(&doubling)
            .and_then(|p| p.root())
            .unwrap_err();
        assert!(err.0.contains("more than"), "{err}");
        let big = format!("stages: []\n#{}", "x".repeat(MAX_PIPELINE_BYTES));
        assert!(Pipeline::parse(&big).unwrap_err().0.contains("more than"));
    }
}
