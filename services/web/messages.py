"""Refusals in Chinese, for clients that ask for it (Accept-Language: zh…) and for the pages:
each error's stable `code` (services/district/errors.py) as a sentence, and each problem of a
422 by its type (pydantic's, or ours) with the limits it names. The English `detail` stays
beside them: it says exactly what to fix, and it is what the logs and the tests read."""

from collections.abc import Mapping
from typing import Any

REFUSALS = {
    "bad_request": "请求有误",
    "unauthorized": "需要登录：请提供有效的访问令牌",
    "token_missing": "缺少访问令牌，请先登录",
    "token_invalid": "令牌无效，请重新登录",
    "token_expired": "令牌已过期，请重新登录",
    "token_revoked": "此账号已停用，令牌不再有效",
    "forbidden": "无权进行此操作",
    "not_your_ticket": "此工单不由您所在单位处理，无权查看或操作",
    "not_found": "找不到所请求的内容",
    "ticket_not_found": "找不到该工单",
    "method_not_allowed": "不支持此请求方法",
    "conflict": "当前状态不允许此操作",
    "ticket_conflict": "工单当前状态不允许此操作（可能已被他人接单、已转出或已关闭）",
    "case_conflict": "案件当前状态不允许此操作",
    "not_first_reporter": "您的反映已并入其他居民先报的案件：您可以跟进，但只有首位反映人可以撤销或评价",
    "already_acknowledged": "此督办已有人跟进",
    "idempotency_conflict": "同一幂等键已用于内容不同的请求",
    "not_redrivable": "只有投递失败的消息才能重新投递",
    "too_large": "请求内容过大",
    "invalid": "填写的内容有误",
    "rate_limited": "请求过于频繁，请稍后再试",
    "headers_too_large": "请求头过大",
    "unavailable": "服务暂时不可用，请稍后再试",
    "server_error": "服务器处理出错，已记录，请稍后再试",
}

PROBLEMS = {
    "missing": "必填",
    "string_too_long": "最多 {max_length} 个字",
    "string_too_short": "至少 {min_length} 个字",
    "too_long": "最多 {max_length} 项",
    "too_short": "至少 {min_length} 项",
    "string_pattern_mismatch": "格式不正确",
    "string_type": "须为文字",
    "int_parsing": "须为整数",
    "int_type": "须为整数",
    "float_parsing": "须为数字",
    "bool_parsing": "须为 true 或 false",
    "greater_than_equal": "不能小于 {ge}",
    "less_than_equal": "不能大于 {le}",
    "greater_than": "须大于 {gt}",
    "less_than": "须小于 {lt}",
    "enum": "只能是：{expected}",
    "literal_error": "只能是：{expected}",
    "url_parsing": "不是有效的链接",
    "url_scheme": "链接须以 http:// 或 https:// 开头",
    "json_invalid": "不是有效的 JSON",
    "extra_forbidden": "没有这一项，请删去",
    "datetime_from_date_parsing": "不是有效的时间",
    "datetime_parsing": "不是有效的时间",
    "finite_number": "须为有限的数字",
    "unstorable_text": "含有无法保存的字符",
    "channel_needs_address": "选了这个通知渠道，就要填写它的地址",
    "control_character": "含有不允许的控制字符（只允许换行和制表符）",
    "blank": "不能为空，请用文字说明",
    "lat_and_lon": "经度和纬度须同时填写",
    "one_location": "位置只能用一种方式给出：经纬度、地址或网格编号，三选一",
    "anonymous_with_contact": "匿名反映不能留联系方式，请去掉其中一项",
    "outside_jurisdiction": "这个位置不在本区任何网格内，请检查坐标",
    "unknown_address": "地址库中没有这个地址，请改用经纬度或网格编号",
    "unknown_grid": "没有这个网格编号",
    "unknown_category": "没有这个类别，请从类别列表中选择",
    "unpublished_category": "这个类别不公开，请选择其他类别",
    "invalid_attribute": "不符合这个类别对此项的要求",
    "unknown_community": "没有这个社区，请从列表中选择",
    "bad_cursor": "翻页标记无效，请从第一页重新开始",
    "needs_time_zone": "时间须带时区，例如 2026-11-01T00:00:00+08:00",
    "moment_out_of_range": "须在 1900 年至 2199 年之间",
    "until_before_since": "结束时间须晚于开始时间",
    "unknown_place": "本辖区内没有这一项",
    "unknown_channel": "通知渠道只能是邮件（email）或短信（sms）",
    "token_days": "令牌有效期至少一天",
    "unknown_unit": "本区没有这个单位",
}


def wants_chinese(accept_language: str | None) -> bool:
    """Whether the client's first language is Chinese."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return first.startswith("zh")


def refusal(code: str) -> str:
    return REFUSALS.get(code, REFUSALS["bad_request"])


def problem(error: Mapping[str, Any]) -> str:
    """One problem of a 422, in Chinese: where (the field's name as sent) and what is wrong. A
    problem of a kind not listed here has no Chinese of its own: it says where, and the English."""
    where = ".".join(str(part) for part in error.get("loc", []) if part not in ("body", "query", "path"))
    said = PROBLEMS.get(str(error.get("type")))
    if said is not None:
        ctx = error.get("ctx") or {}
        try:
            said = said.format(**ctx)
        except (KeyError, IndexError):
            said = None
    said = said or str(error.get("msg", "有误"))
    return f"{where}：{said}" if where else said
