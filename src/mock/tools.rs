//! Mock tool use for `/v1/messages`: whether to call a tool, which one, and
//! its input, made of placeholder values for the properties the tool's
//! `input_schema` requires. The rule is simple so tests can steer it: a
//! forced `tool_choice` (`any`, or `tool` by name) always calls; `auto` (or
//! none given) calls the first tool when the last user message mentions
//! "weather" and is not itself a tool result; `none` never calls.

use serde_json::{Map, Value, json};

/// The tool to call, if the request asks for one.
pub(super) fn chosen<'a>(
    tools: &'a [Value],
    tool_choice: Option<&Value>,
    messages: &[Value],
) -> Option<&'a Value> {
    let first = tools.first()?;
    match tool_choice.and_then(|c| c["type"].as_str()) {
        Some("none") => None,
        Some("any") => Some(first),
        Some("tool") => {
            let name = tool_choice.and_then(|c| c["name"].as_str());
            tools
                .iter()
                .find(|t| t["name"].as_str() == name)
                .or(Some(first))
        }
        _ => asks_for_weather(messages).then_some(first),
    }
}

/// The last user message mentions weather and carries no tool result.
fn asks_for_weather(messages: &[Value]) -> bool {
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return false;
    };
    let content = &last["content"];
    let blocks = content.as_array().map_or(&[][..], Vec::as_slice);
    if blocks.iter().any(|b| b["type"] == "tool_result") {
        return false;
    }
    super::content_text(content)
        .to_lowercase()
        .contains("weather")
}

/// The input for `tool`: its schema's required properties, with placeholders.
pub(super) fn input(tool: &Value) -> Value {
    object(&tool["input_schema"])
}

/// An object with a placeholder for each required property of `schema`.
fn object(schema: &Value) -> Value {
    let required = schema["required"].as_array().map_or(&[][..], Vec::as_slice);
    let fields: Map<String, Value> = required
        .iter()
        .filter_map(Value::as_str)
        .map(|name| (name.to_string(), placeholder(&schema["properties"][name])))
        .collect();
    Value::Object(fields)
}

/// A value that fits `schema`: its first `enum` value, or one of its type.
fn placeholder(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.first().and_then(Value::as_str),
        kind => kind.as_str(),
    };
    match kind {
        Some("integer" | "number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => object(schema),
        Some("null") => Value::Null,
        _ => json!("mock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({"name": "get_weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "kelvin"]},
                "days": {"type": "integer"}, "where": {"type": "object",
                    "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                "optional": {"type": "string"}},
            "required": ["city", "unit", "days", "where"]}})
    }

    #[test]
    fn input_fills_required_properties() {
        let expected = json!({"city": "mock", "unit": "celsius", "days": 1, "where": {"lat": 1}});
        assert_eq!(input(&weather()), expected);
        assert_eq!(input(&json!({"name": "t"})), json!({}));
    }

    #[test]
    fn choice_follows_tool_choice_and_the_question() {
        let tools = [weather(), json!({"name": "other"})];
        let ask = |text: &str| vec![json!({"role": "user", "content": text})];
        let pick = |choice: Value, messages: &[Value]| {
            chosen(&tools, Some(&choice).filter(|c| !c.is_null()), messages)
                .map(|t| t["name"].as_str().unwrap().to_string())
        };
        let weather_q = ask("What's the Weather in Paris?");
        assert_eq!(
            pick(Value::Null, &weather_q).as_deref(),
            Some("get_weather")
        );
        assert_eq!(pick(json!({"type": "auto"}), &ask("hello")), None);
        assert_eq!(pick(json!({"type": "none"}), &weather_q), None);
        assert_eq!(
            pick(json!({"type": "any"}), &ask("hello")).as_deref(),
            Some("get_weather")
        );
        let named = json!({"type": "tool", "name": "other"});
        assert_eq!(pick(named, &ask("hello")).as_deref(), Some("other"));
        assert!(chosen(&[], None, &weather_q).is_none());
        let answered = vec![
            json!({"role": "user", "content": "weather?"}),
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": {}}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "weather: sun"}]}),
        ];
        assert_eq!(pick(Value::Null, &answered), None);
    }
}
