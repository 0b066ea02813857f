"""The public page's words, Chinese first."""

from services.web.pages import Labels, Lang

LABELS: Labels = {
    "zh-CN": {
        "title": "办理结果公示",
        "switch_lang": "English",
        "community": "社区",
        "category": "类别",
        "all": "全部",
        "filter": "筛选",
        "grid": "网格",
        "reported": "上报时间",
        "resolved": "办结时间",
        "closed": "关闭时间",
        "unit": "办理单位",
        "result": "办理结果",
        "satisfaction": "满意度",
        "next": "下一页",
        "first": "第一页",
        "empty": "暂无办结的工单",
        "note": "本页仅公示公开类别的已办结工单，不含任何个人信息。",
    },
    "en": {
        "title": "Results of residents' reports",
        "switch_lang": "中文",
        "community": "Community",
        "category": "Category",
        "all": "All",
        "filter": "Filter",
        "grid": "Grid",
        "reported": "Reported",
        "resolved": "Resolved",
        "closed": "Closed",
        "unit": "Resolved by",
        "result": "Result",
        "satisfaction": "Satisfaction",
        "next": "Next page",
        "first": "First page",
        "empty": "No resolved cases yet",
        "note": "Only resolved cases of public categories are shown, without any personal data.",
    },
}

SATISFACTION: dict[Lang, dict[str | None, str]] = {
    "zh-CN": {"satisfied": "满意", "unsatisfied": "不满意", "no_answer": "未回复", None: "回访中"},
    "en": {"satisfied": "Satisfied", "unsatisfied": "Not satisfied", "no_answer": "No answer", None: "Awaiting answer"},
}
