"""The board's words, Chinese first; the page renders its labels from these and the script
reads the same dict (as JSON in the page) for what it writes itself."""

from typing import Literal

Lang = Literal["zh-CN", "en"]

ZH: dict[str, str] = {
    "title": "超时督办看板",
    "switch_lang": "English",
    "token": "运维令牌",
    "token_hint": "粘贴运维访问令牌（Bearer token）",
    "sign_in": "登录",
    "sign_out": "退出",
    "breaches": "实时超时",
    "live": "实时连接中",
    "offline": "连接中断，正在重连…",
    "empty": "暂无超时",
    "case": "案件",
    "tier": "层级",
    "unit": "单位",
    "clock": "时限",
    "late": "超时",
    "at": "记录时间",
    "response": "响应",
    "resolution": "办结",
    "supervised": "督办",
    "rates": "三率与闭环率",
    "today": "今日",
    "month": "近30天",
    "place": "街道 / 社区",
    "response_rate": "响应率",
    "resolution_rate": "办结率",
    "satisfaction_rate": "满意率",
    "grid_closure": "网格闭环率",
    "community_closure": "社区闭环率",
    "daily": "每日案件（近30天）",
    "opened": "受理",
    "escalated": "升级",
    "resolved": "办结",
    "history": "案件经过",
    "close": "关闭",
    "error": "出错了：{t}",
}

EN: dict[str, str] = {
    "title": "Breach board",
    "switch_lang": "中文",
    "token": "Ops token",
    "token_hint": "Paste the ops bearer token",
    "sign_in": "Sign in",
    "sign_out": "Sign out",
    "breaches": "Live breaches",
    "live": "live",
    "offline": "disconnected, reconnecting…",
    "empty": "No breaches",
    "case": "Case",
    "tier": "Tier",
    "unit": "Unit",
    "clock": "Clock",
    "late": "Late by",
    "at": "Recorded",
    "response": "response",
    "resolution": "resolution",
    "supervised": "supervised",
    "rates": "Rates and closure",
    "today": "today",
    "month": "last 30 days",
    "place": "Street / community",
    "response_rate": "Response",
    "resolution_rate": "Resolution",
    "satisfaction_rate": "Satisfaction",
    "grid_closure": "Grid closure",
    "community_closure": "Community closure",
    "daily": "Cases per day (last 30 days)",
    "opened": "opened",
    "escalated": "escalated",
    "resolved": "resolved",
    "history": "History",
    "close": "Close",
    "error": "Error: {t}",
}

LABELS: dict[Lang, dict[str, str]] = {"zh-CN": ZH, "en": EN}
TIERS: dict[Lang, dict[str, str]] = {
    "zh-CN": {"grid": "网格", "community": "社区", "street": "街道", "bureau": "职能部门"},
    "en": {"grid": "grid", "community": "community", "street": "street", "bureau": "bureau"},
}


def language(asked: str | None) -> Lang:
    """English when asked for (`en`, `en-GB`...); Chinese otherwise."""
    return "en" if asked and asked.lower().split("-")[0] == "en" else "zh-CN"
