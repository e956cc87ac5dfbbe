//! Resolving a VM argument the way ignite's `IDNameFilter` does
//! (`pkg/filter/idname.go`, `pkg/util/util.go` `MatchPrefix`, libgitops
//! `filterer.Find`): an exact ID or name wins, otherwise a unique prefix of
//! either.

use crate::vm::Vm;

/// Finds the one VM `query` designates, or ignite's error message.
pub fn find<'a>(vms: &'a [Vm], query: &str) -> Result<&'a Vm, String> {
    let mut exact: Option<(&Vm, Vec<String>)> = None;
    let mut prefixed: Vec<(&Vm, Vec<String>)> = Vec::new();
    for vm in vms {
        let (matches, is_exact) = match_prefix(query, &[&vm.id, &vm.name]);
        if matches.is_empty() {
            continue;
        }
        if is_exact {
            if let Some(first) = exact.take() {
                return Err(ambiguous(query, &[first, (vm, matches)]));
            }
            exact = Some((vm, matches));
        } else {
            prefixed.push((vm, matches));
        }
    }
    if let Some((vm, _)) = exact {
        return Ok(vm);
    }
    match prefixed.as_slice() {
        [] => Err(format!(
            "can't find VM: no ID/name matches for {}",
            crate::log::go_quote(query)
        )),
        [(vm, _)] => Ok(vm),
        many => Err(ambiguous(query, many)),
    }
}

/// Resolves every query first, failing on the first that does not resolve.
pub fn find_all<'a>(vms: &'a [Vm], queries: &[String]) -> Result<Vec<&'a Vm>, String> {
    queries.iter().map(|q| find(vms, q)).collect()
}

/// `util.MatchPrefix`: the fields equal to `prefix` if any (exact), else the
/// fields starting with it.
fn match_prefix(prefix: &str, fields: &[&str]) -> (Vec<String>, bool) {
    let exact: Vec<String> = fields
        .iter()
        .filter(|f| **f == prefix)
        .map(|f| f.to_string())
        .collect();
    if !exact.is_empty() {
        return (exact, true);
    }
    (
        fields
            .iter()
            .filter(|f| f.starts_with(prefix))
            .map(|f| f.to_string())
            .collect(),
        false,
    )
}

/// `IDNameFilter.AmbiguousError`.
fn ambiguous(query: &str, matches: &[(&Vm, Vec<String>)]) -> String {
    let names: Vec<String> = matches
        .iter()
        .flat_map(|(_, m)| m.iter().cloned())
        .collect();
    format!(
        "ambiguous VM query: {} matched the following IDs/names: {}",
        crate::log::go_quote(query),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::sample_vm;

    fn vm(id: &str, name: &str) -> Vm {
        Vm {
            id: id.into(),
            name: name.into(),
            ..sample_vm()
        }
    }

    #[test]
    fn matches_like_ignite() {
        let vms = vec![
            vm("a1b2c3d4e5f60718", "alpha"),
            vm("b000000000000001", "beta"),
            vm("c000000000000001", "a1"),
        ];
        assert_eq!(
            find(&vms, "alpha").map(|v| &v.name),
            Ok(&"alpha".to_string())
        );
        assert_eq!(find(&vms, "b0").map(|v| &v.name), Ok(&"beta".to_string()));
        assert_eq!(find(&vms, "be").map(|v| &v.name), Ok(&"beta".to_string()));
        // "a1" is the exact name of the third VM and a prefix of the first's ID.
        assert_eq!(
            find(&vms, "a1").map(|v| &v.id),
            Ok(&"c000000000000001".to_string())
        );
        assert_eq!(
            find(&vms, "nope"),
            Err("can't find VM: no ID/name matches for \"nope\"".into())
        );
        assert_eq!(
            find(&vms, "a"),
            Err("ambiguous VM query: \"a\" matched the following IDs/names: a1b2c3d4e5f60718, alpha, a1".into())
        );
        assert!(find_all(&vms, &["alpha".into(), "nope".into()]).is_err());
    }
}
