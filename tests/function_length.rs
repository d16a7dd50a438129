//! No function in `src/` grows past [`LIMIT`] lines, so the code keeps reading as named
//! steps. Every `fn` (free, method, trait default, nested) is measured from its `fn` line to
//! its closing brace; test code is exempt. The functions still over the limit are listed in
//! [`ALLOWED`] with their current length: one that grows fails here, and so does one that has
//! been split (remove it), so the list only shrinks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use syn::visit::Visit;

use crate::util::{is_test_file, rust_files};

/// The longest a function may be, in lines from `fn` to its closing brace.
const LIMIT: usize = 80;

/// A function allowed over [`LIMIT`] for now: where it is, how long it may be at most, and why
/// it has not been split yet.
struct Allowed {
    /// Path under `src/`, with `/` separators.
    file: &'static str,
    /// As reported by the test: `name`, `Type::name` for methods, `outer::name` for nested fns.
    name: &'static str,
    lines: usize,
    reason: &'static str,
}

/// The functions still over the limit; shrink it, never grow it.
const ALLOWED: &[Allowed] = &[];

/// One function found in `src/`.
#[derive(Debug)]
struct Function {
    file: String,
    line: usize,
    name: String,
    lines: usize,
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `#[cfg(test)]` (or `#[cfg(all(test, …))]`) and `#[test]` mark test code.
fn is_test_code(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("test") {
            return true;
        }
        if !path.is_ident("cfg") {
            return false;
        }
        let mut test = false;
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("test") {
                test = true;
            } else if meta.path.is_ident("all") {
                meta.parse_nested_meta(|inner| {
                    test |= inner.path.is_ident("test");
                    if inner.input.peek(syn::token::Paren) {
                        inner.parse_nested_meta(|_| Ok(()))?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        });
        test
    })
}

/// Walks one file's syntax tree, measuring every function outside test code.
struct Measure {
    file: String,
    /// Names of the impls, traits and functions the walk is inside, outermost first.
    scope: Vec<String>,
    found: Vec<Function>,
}

impl Measure {
    fn record(&mut self, ident: &syn::Ident, fn_token: &syn::token::Fn, block: &syn::Block) {
        let first = fn_token.span.start().line;
        let last = block.brace_token.span.close().end().line;
        let mut name = self.scope.clone();
        name.push(ident.to_string());
        self.found.push(Function {
            file: self.file.clone(),
            line: first,
            name: name.join("::"),
            lines: last + 1 - first,
        });
    }
}

impl<'ast> Visit<'ast> for Measure {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_code(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if is_test_code(&item.attrs) {
            return;
        }
        self.record(&item.sig.ident, &item.sig.fn_token, &item.block);
        self.scope.push(item.sig.ident.to_string());
        syn::visit::visit_item_fn(self, item);
        self.scope.pop();
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if is_test_code(&item.attrs) {
            return;
        }
        let self_type = match &*item.self_ty {
            syn::Type::Path(path) => path
                .path
                .segments
                .last()
                .map(|segment| segment.ident.to_string()),
            _ => None,
        };
        self.scope
            .push(self_type.unwrap_or_else(|| "impl".to_owned()));
        syn::visit::visit_item_impl(self, item);
        self.scope.pop();
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if is_test_code(&item.attrs) {
            return;
        }
        self.record(&item.sig.ident, &item.sig.fn_token, &item.block);
        self.scope.push(item.sig.ident.to_string());
        syn::visit::visit_impl_item_fn(self, item);
        self.scope.pop();
    }

    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        if is_test_code(&item.attrs) {
            return;
        }
        self.scope.push(item.ident.to_string());
        syn::visit::visit_item_trait(self, item);
        self.scope.pop();
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if is_test_code(&item.attrs) {
            return;
        }
        if let Some(block) = &item.default {
            self.record(&item.sig.ident, &item.sig.fn_token, block);
        }
        self.scope.push(item.sig.ident.to_string());
        syn::visit::visit_trait_item_fn(self, item);
        self.scope.pop();
    }
}

/// Every function in `text`, the source of `file`.
fn measure(file: &str, text: &str) -> Vec<Function> {
    let syntax = syn::parse_file(text).unwrap_or_else(|error| {
        let at = error.span().start();
        panic!("src/{file}:{}:{}: {error}", at.line, at.column + 1)
    });
    let mut measure = Measure {
        file: file.to_owned(),
        scope: Vec::new(),
        found: Vec::new(),
    };
    measure.visit_file(&syntax);
    measure.found
}

fn functions() -> Vec<Function> {
    let src = src();
    let mut functions = Vec::new();
    for path in rust_files(&src) {
        let relative = path.strip_prefix(&src).expect("under src/");
        // Test code is exempt: test-only files, and anything in a `tests/` folder.
        if is_test_file(&path)
            || relative
                .components()
                .any(|part| part.as_os_str() == "tests")
        {
            continue;
        }
        let file = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let text = std::fs::read_to_string(&path).expect("a source file is readable");
        functions.extend(measure(&file, &text));
    }
    functions
}

/// What is wrong with `functions` against [`LIMIT`] and `allowed`, one line each.
fn problems(functions: &[Function], allowed: &[Allowed]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for function in functions.iter().filter(|function| function.lines > LIMIT) {
        let entry = allowed
            .iter()
            .position(|entry| entry.file == function.file && entry.name == function.name);
        match entry {
            None => problems.push(format!(
                "src/{}:{}: `{}` is {} lines, over {LIMIT}: split it into named steps",
                function.file, function.line, function.name, function.lines
            )),
            Some(index) => {
                used.insert(index);
                let entry = &allowed[index];
                if function.lines > entry.lines {
                    problems.push(format!(
                        "src/{}:{}: `{}` grew to {} lines; the allow-list says at most {}",
                        function.file, function.line, function.name, function.lines, entry.lines
                    ));
                }
            }
        }
    }
    for (index, entry) in allowed.iter().enumerate() {
        if !used.contains(&index) {
            let now = functions
                .iter()
                .find(|function| function.file == entry.file && function.name == entry.name)
                .map_or_else(|| "is gone".to_owned(), |f| format!("is {} lines", f.lines));
            problems.push(format!(
                "src/{}: `{}` {now}, no longer over {LIMIT}: remove it from ALLOWED",
                entry.file, entry.name
            ));
        }
    }
    problems
}

#[test]
fn no_function_in_src_is_over_the_limit_unless_allowed() {
    let started = Instant::now();
    let functions = functions();
    assert!(
        functions.len() > 500,
        "the scan found only {} functions: is it reading src/?",
        functions.len()
    );
    for entry in ALLOWED {
        assert!(
            entry.lines > LIMIT && !entry.reason.is_empty(),
            "ALLOWED: `{}` needs a length over {LIMIT} and a reason",
            entry.name
        );
    }
    let problems = problems(&functions, ALLOWED);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    let took = started.elapsed();
    assert!(
        took.as_secs_f64() < 5.0,
        "measuring src/ took {took:?}; it should be well under a second"
    );
}

#[test]
fn measures_methods_and_nested_fns_and_skips_test_code() {
    let body = "    let x = 1;\n".repeat(3);
    let text = format!(
        "struct S;\nimpl S {{\n    fn method(&self) {{\n{body}    }}\n}}\n\
         fn outer() {{\n    fn inner() {{ let s = \"}}\"; let c = '}}'; }}\n    // }}\n}}\n\
         #[cfg(test)]\nmod tests {{\n    fn helper() {{}}\n}}\n\
         #[cfg(all(test, unix))]\nfn only_in_tests() {{}}\n"
    );
    let found = measure("x.rs", &text);
    let summary: Vec<(&str, usize, usize)> = found
        .iter()
        .map(|function| (function.name.as_str(), function.line, function.lines))
        .collect();
    assert_eq!(
        summary,
        [
            ("S::method", 3, 5),
            ("outer", 9, 4),
            ("outer::inner", 10, 1)
        ]
    );
}

#[test]
fn the_allow_list_fails_on_growth_and_on_entries_no_longer_needed() {
    let function = |name: &str, lines| Function {
        file: "a.rs".to_owned(),
        line: 1,
        name: name.to_owned(),
        lines,
    };
    let allowed = [
        Allowed {
            file: "a.rs",
            name: "grew",
            lines: 90,
            reason: "r",
        },
        Allowed {
            file: "a.rs",
            name: "split",
            lines: 90,
            reason: "r",
        },
        Allowed {
            file: "a.rs",
            name: "same",
            lines: 90,
            reason: "r",
        },
    ];
    let functions = [
        function("grew", 91),
        function("split", 40),
        function("same", 90),
        function("new", 81),
        function("short", 80),
    ];
    let problems = problems(&functions, &allowed);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("`grew` grew to 91"));
    assert!(problems[1].contains("`new` is 81 lines"));
    assert!(problems[2].contains("`split` is 40 lines, no longer over"));
}
