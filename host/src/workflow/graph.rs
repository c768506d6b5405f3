//! Step graphs as MessagePack: finding the steps and objects nested in a
//! step's arguments, naming steps, and putting outputs in their place.

use prism_abi::workflow::{MAX_STEP_NAME, OBJECT_EXT, STEP_EXT, StepNode};
use rmpv::Value;

/// MessagePack extension type of an object the host checkpointed: the
/// data is the hex digest of its value in the workflow's values.
pub const CHECKPOINT_EXT: i8 = 0x43;

/// Deepest nesting of values and steps the host walks (64).
pub const MAX_DEPTH: usize = 64;

/// Why a graph is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    /// A value or a node does not decode.
    #[error("a step does not decode: {0}")]
    Malformed(String),
    /// A name is empty, too long, or holds `#` or `/`.
    #[error("step name {0:?} is not valid (1 to 256 bytes, no '#', '/' or control characters)")]
    BadName(String),
    /// Nested past [`MAX_DEPTH`].
    #[error("the step graph is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// What an argument holds in place of a value.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// A step to run first.
    Step(Box<StepNode>),
    /// An object of the run to read (and checkpoint).
    Object([u8; 16]),
    /// A value the host checkpointed (its digest).
    Checkpoint(String),
}

/// Checks a user-chosen step name.
pub fn check_name(name: &str) -> Result<(), GraphError> {
    if name.is_empty()
        || name.len() > MAX_STEP_NAME
        || name.contains(['#', '/'])
        || name.chars().any(char::is_control)
    {
        return Err(GraphError::BadName(name.to_string()));
    }
    Ok(())
}

/// Decodes one argument.
pub fn parse(arg: &[u8]) -> Result<Value, GraphError> {
    let mut rest = arg;
    let value =
        rmpv::decode::read_value(&mut rest).map_err(|e| GraphError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(GraphError::Malformed(format!(
            "{} bytes follow the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Encodes one value.
pub fn write(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// The slots of `value`, in walk order (depth first, left to right).
pub fn slots(value: &Value) -> Result<Vec<Slot>, GraphError> {
    let mut out = Vec::new();
    walk(value, 0, &mut |v| {
        if let Some(slot) = slot_of(v)? {
            out.push(slot);
            return Ok(true);
        }
        Ok(false)
    })?;
    Ok(out)
}

/// Replaces the slots of `value`, in walk order, by `outputs` (one
/// encoded value each).
pub fn fill(value: &mut Value, outputs: &[Value]) -> Result<(), GraphError> {
    let mut next = outputs.iter();
    walk_mut(value, 0, &mut |v| {
        if slot_of(v)?.is_some() {
            *v = next
                .next()
                .cloned()
                .ok_or_else(|| GraphError::Malformed("fewer outputs than slots".into()))?;
            return Ok(true);
        }
        Ok(false)
    })
}

fn slot_of(v: &Value) -> Result<Option<Slot>, GraphError> {
    let Value::Ext(kind, data) = v else {
        return Ok(None);
    };
    Ok(match *kind {
        STEP_EXT => Some(Slot::Step(Box::new(
            StepNode::decode(data).map_err(|e| GraphError::Malformed(e.to_string()))?,
        ))),
        OBJECT_EXT => Some(Slot::Object(data.as_slice().try_into().map_err(|_| {
            GraphError::Malformed("an object id is not 16 bytes".into())
        })?)),
        CHECKPOINT_EXT => Some(Slot::Checkpoint(String::from_utf8(data.clone()).map_err(
            |_| GraphError::Malformed("a checkpoint digest is not UTF-8".into()),
        )?)),
        _ => None,
    })
}

/// Calls `f` on every value of `value`, outside in; `f` answers whether
/// it consumed the value (then its insides are not visited).
fn walk(
    value: &Value,
    depth: usize,
    f: &mut impl FnMut(&Value) -> Result<bool, GraphError>,
) -> Result<(), GraphError> {
    if depth > MAX_DEPTH {
        return Err(GraphError::TooDeep);
    }
    if f(value)? {
        return Ok(());
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| walk(v, depth + 1, f)),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            walk(k, depth + 1, f)?;
            walk(v, depth + 1, f)
        }),
        _ => Ok(()),
    }
}

fn walk_mut(
    value: &mut Value,
    depth: usize,
    f: &mut impl FnMut(&mut Value) -> Result<bool, GraphError>,
) -> Result<(), GraphError> {
    if depth > MAX_DEPTH {
        return Err(GraphError::TooDeep);
    }
    if f(value)? {
        return Ok(());
    }
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(|v| walk_mut(v, depth + 1, f)),
        Value::Map(entries) => entries.iter_mut().try_for_each(|(k, v)| {
            walk_mut(k, depth + 1, f)?;
            walk_mut(v, depth + 1, f)
        }),
        _ => Ok(()),
    }
}

/// Names every unnamed step of `node` and below it, depth first, as
/// `<function>#<n>` with `n` taken from `counter`; checks the names
/// users chose. `root_name` names `node` itself if it has no name.
pub fn name_steps(
    node: &mut StepNode,
    root_name: Option<&str>,
    counter: &mut u64,
) -> Result<(), GraphError> {
    name_node(
        node,
        root_name,
        &mut || {
            *counter += 1;
            *counter
        },
        0,
    )
}

/// [`name_steps`] with numbers from `next` (e.g. a counter shared by
/// steps that continue at the same time).
pub fn name_steps_with(
    node: &mut StepNode,
    next: &mut dyn FnMut() -> u64,
) -> Result<(), GraphError> {
    name_node(node, None, next, 0)
}

fn name_node(
    node: &mut StepNode,
    own: Option<&str>,
    counter: &mut dyn FnMut() -> u64,
    depth: usize,
) -> Result<(), GraphError> {
    if depth > MAX_DEPTH {
        return Err(GraphError::TooDeep);
    }
    match &node.options.name {
        Some(name) => check_name(name)?,
        None => {
            node.options.name = Some(match own {
                Some(name) => name.to_string(),
                None => format!("{}#{}", node.label(), counter()),
            });
        }
    }
    for after in node.after.iter_mut() {
        let mut inner =
            StepNode::decode(after).map_err(|e| GraphError::Malformed(e.to_string()))?;
        name_node(&mut inner, None, counter, depth + 1)?;
        *after = inner.encode();
    }
    for arg in node.args.iter_mut() {
        let mut value = parse(arg)?;
        let mut failure = None;
        walk_mut(&mut value, 0, &mut |v| {
            if let Value::Ext(STEP_EXT, data) = v {
                let renamed = StepNode::decode(data)
                    .map_err(|e| GraphError::Malformed(e.to_string()))
                    .and_then(|mut inner| {
                        name_node(&mut inner, None, counter, depth + 1)?;
                        Ok(inner.encode())
                    });
                match renamed {
                    Ok(bytes) => *data = bytes,
                    Err(e) => failure = Some(e),
                }
                return Ok(true);
            }
            Ok(false)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        *arg = write(&value);
    }
    Ok(())
}

/// Whether `name` names `node` or a step below it.
pub fn contains_name(node: &StepNode, name: &str) -> Result<bool, GraphError> {
    contains_name_at(node, name, 0)
}

fn contains_name_at(node: &StepNode, name: &str, depth: usize) -> Result<bool, GraphError> {
    if depth > MAX_DEPTH {
        return Err(GraphError::TooDeep);
    }
    if node.options.name.as_deref() == Some(name) {
        return Ok(true);
    }
    for after in &node.after {
        let inner = StepNode::decode(after).map_err(|e| GraphError::Malformed(e.to_string()))?;
        if contains_name_at(&inner, name, depth + 1)? {
            return Ok(true);
        }
    }
    for arg in &node.args {
        for slot in slots(&parse(arg)?)? {
            if let Slot::Step(inner) = slot
                && contains_name_at(&inner, name, depth + 1)?
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Replaces every object of `node` and below it by a checkpoint, with
/// `checkpoint` turning an object id into the digest of its stored value.
pub async fn checkpoint_objects<F, Fut, E>(node: &mut StepNode, checkpoint: &F) -> Result<(), E>
where
    F: Fn([u8; 16]) -> Fut,
    Fut: std::future::Future<Output = Result<String, E>>,
    E: From<GraphError>,
{
    for arg in node.args.iter_mut() {
        let mut value = parse(arg)?;
        let found = slots(&value)?;
        if found.is_empty() {
            continue;
        }
        let mut outputs = Vec::with_capacity(found.len());
        for slot in found {
            outputs.push(match slot {
                Slot::Object(id) => Value::Ext(CHECKPOINT_EXT, checkpoint(id).await?.into_bytes()),
                Slot::Step(mut inner) => {
                    Box::pin(checkpoint_objects(&mut inner, checkpoint)).await?;
                    Value::Ext(STEP_EXT, inner.encode())
                }
                Slot::Checkpoint(digest) => Value::Ext(CHECKPOINT_EXT, digest.into_bytes()),
            });
        }
        fill(&mut value, &outputs)?;
        *arg = write(&value);
    }
    for after in node.after.iter_mut() {
        let mut inner =
            StepNode::decode(after).map_err(|e| GraphError::Malformed(e.to_string()))?;
        Box::pin(checkpoint_objects(&mut inner, checkpoint)).await?;
        *after = inner.encode();
    }
    Ok(())
}

/// The type and data of `output` if it is one extension value.
fn top_ext(output: &[u8]) -> Option<(i8, &[u8])> {
    let (&marker, rest) = output.split_first()?;
    let be = |n: usize| -> Option<usize> {
        let bytes = rest.get(..n)?;
        Some(
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
        )
    };
    // (data length, bytes before the type byte)
    let (size, header) = match marker {
        0xd4 => (1, 0),
        0xd5 => (2, 0),
        0xd6 => (4, 0),
        0xd7 => (8, 0),
        0xd8 => (16, 0),
        0xc7 => (be(1)?, 1),
        0xc8 => (be(2)?, 2),
        0xc9 => (be(4)?, 4),
        _ => return None,
    };
    let (&kind, data) = rest.get(header..)?.split_first()?;
    (data.len() == size).then_some((kind as i8, data))
}

/// The continuation a task returned, if its value is a step node.
pub fn continuation(output: &[u8]) -> Option<Result<StepNode, GraphError>> {
    match top_ext(output)? {
        (STEP_EXT, data) => {
            Some(StepNode::decode(data).map_err(|e| GraphError::Malformed(e.to_string())))
        }
        _ => None,
    }
}

/// The object a task returned in place of its value, if it did.
pub fn returned_object(output: &[u8]) -> Option<[u8; 16]> {
    match top_ext(output)? {
        (OBJECT_EXT, data) => data.try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: u64) -> Vec<u8> {
        prism_abi::encode_value(&x).unwrap()
    }

    fn ext(node: &StepNode) -> Value {
        Value::Ext(STEP_EXT, node.encode())
    }

    #[test]
    fn steps_nested_in_arrays_and_maps_are_found_and_filled_in_order() {
        let a = StepNode::task("a", vec![v(1)]);
        let b = StepNode::task("b", vec![]);
        let value = Value::Map(vec![(
            Value::from("xs"),
            Value::Array(vec![ext(&a), Value::from(7), ext(&b)]),
        )]);
        let found = slots(&value).unwrap();
        assert_eq!(
            found,
            vec![Slot::Step(Box::new(a)), Slot::Step(Box::new(b))]
        );
        let mut filled = value.clone();
        fill(&mut filled, &[Value::from(10), Value::from(20)]).unwrap();
        assert_eq!(
            filled,
            Value::Map(vec![(
                Value::from("xs"),
                Value::Array(vec![Value::from(10), Value::from(7), Value::from(20)])
            )])
        );
    }

    #[test]
    fn names_are_derived_depth_first_and_kept_when_chosen() {
        // mul(5, factorial(4)) with a named `after`.
        let inner = StepNode::task("factorial", vec![v(4)]);
        let mut mul = StepNode::task("mul", vec![v(5), write(&ext(&inner))]);
        let mut named = StepNode::task("log", vec![]);
        named.options.name = Some("audit".into());
        mul.after.push(named.encode());
        let mut counter = 3;
        name_steps(&mut mul, None, &mut counter).unwrap();
        assert_eq!(mul.options.name.as_deref(), Some("mul#4"));
        assert_eq!(
            StepNode::decode(&mul.after[0])
                .unwrap()
                .options
                .name
                .as_deref(),
            Some("audit")
        );
        let Slot::Step(child) = slots(&parse(&mul.args[1]).unwrap()).unwrap().remove(0) else {
            panic!("not a step");
        };
        assert_eq!(child.options.name.as_deref(), Some("factorial#5"));
        for (name, found) in [
            ("mul#4", true),
            ("audit", true),
            ("factorial#5", true),
            ("x", false),
        ] {
            assert_eq!(contains_name(&mul, name).unwrap(), found, "{name}");
        }
        assert_eq!(counter, 5);
        let mut root = StepNode::task("factorial", vec![v(5)]);
        name_steps(&mut root, Some("factorial"), &mut 0).unwrap();
        assert_eq!(root.options.name.as_deref(), Some("factorial"));
    }

    #[test]
    fn bad_names_and_deep_graphs_are_refused() {
        for bad in ["", "a#1", "a/b", "x\n"] {
            let mut node = StepNode::task("f", vec![]);
            node.options.name = Some(bad.into());
            assert!(matches!(
                name_steps(&mut node, None, &mut 0),
                Err(GraphError::BadName(_))
            ));
        }
        let mut value = Value::from(1);
        for _ in 0..MAX_DEPTH + 2 {
            value = Value::Array(vec![value]);
        }
        assert_eq!(slots(&value), Err(GraphError::TooDeep));
        assert!(matches!(parse(&[]), Err(GraphError::Malformed(_))));
        assert!(matches!(
            parse(&[0x01, 0x02]),
            Err(GraphError::Malformed(_))
        ));
    }

    #[test]
    fn a_continuation_is_a_top_level_step_only() {
        let node = StepNode::task("f", vec![v(1)]);
        assert_eq!(continuation(&node.to_value_bytes()).unwrap().unwrap(), node);
        assert!(continuation(&v(5)).is_none());
        let wrapped = write(&Value::Array(vec![ext(&node)]));
        assert!(continuation(&wrapped).is_none());
        let object = write(&Value::Ext(OBJECT_EXT, vec![7; 16]));
        assert_eq!(returned_object(&object), Some([7; 16]));
        assert!(continuation(&object).is_none());
        assert!(returned_object(&node.to_value_bytes()).is_none());
    }
}
