"""The guard on questions that are not English: each rule rejects its trap and lets a rewording through."""

from __future__ import annotations

import pytest

from proxy.guard import find_conflict
from proxy.guard_scripts import is_foreign

TRAPS = [
    # number: digits, CJK numerals, number words
    ("三公里等于多少英里？", "五公里等于多少英里？", "number"),
    ("3キロは何マイルですか？", "5キロは何マイルですか？", "number"),
    ("Wie viele Meilen sind drei Kilometer?", "Wie viele Meilen sind fünf Kilometer?", "number"),
    ("三十天后还能退货吗？", "六十天后还能退货吗？", "number"),
    # negation: Japanese endings, CJK characters, Korean particles, words elsewhere (French ne…pas once)
    ("アプリにログインできます", "アプリにログインできません", "negation"),
    ("为什么我的订单已发货？", "为什么我的订单没有发货？", "negation"),
    ("결제가 완료된 주문은 어떻게 확인하나요?", "결제가 완료되지 않은 주문은 어떻게 확인하나요?", "negation"),
    ("Pourquoi ma commande est-elle arrivée ?", "Pourquoi ma commande n'est-elle pas arrivée ?", "negation"),
    ("لماذا وصل طلبي؟", "لماذا لم يصل طلبي؟", "negation"),
    # entity: Latin-script names inside another script
    ("如何在Python中反转列表？", "如何在JavaScript中反转列表？", "entity"),
    ("Как установить приложение на Windows?", "Как установить приложение на Mac?", "entity"),
    # direction: the same words swapped around a direction cue
    ("如何把摄氏度转换成华氏度？", "如何把华氏度转换成摄氏度？", "direction"),
    ("摂氏を華氏に変換するにはどうすればいいですか？", "華氏を摂氏に変換するにはどうすればいいですか？", "direction"),
    ("섭씨를 화씨로 바꾸려면 어떻게 하나요?", "화씨를 섭씨로 바꾸려면 어떻게 하나요?", "direction"),
    ("Как перевести градусы Цельсия в Фаренгейты?", "Как перевести градусы Фаренгейта в Цельсии?", "direction"),
    ("Wie rechne ich Celsius in Fahrenheit um?", "Wie rechne ich Fahrenheit in Celsius um?", "direction"),
    # substitution: one span swapped, the rest equal (verbs, places, periods, platforms, payment)
    ("如何取消我的订阅？", "如何修改我的订阅？", "substitution"),
    ("明天北京的天气怎么样？", "明天上海的天气怎么样？", "substitution"),
    ("博物馆上午开放吗？", "博物馆晚上开放吗？", "substitution"),  # 上午/晚上 share 上: still one swap
    ("何時に開店しますか？", "何時に閉店しますか？", "substitution"),
    ("PayPalで支払えますか？", "クレジットカードで支払えますか？", "substitution"),
    ("구독을 취소하려면 어떻게 하나요?", "구독을 변경하려면 어떻게 하나요?", "substitution"),
    ("월간 요금제는 얼마인가요?", "연간 요금제는 얼마인가요?", "substitution"),
    ("아이폰 앱이 있나요?", "안드로이드 앱이 있나요?", "substitution"),
    ("Wann öffnen Sie?", "Wann schließen Sie?", "substitution"),
    ("Puis-je payer avec PayPal ?", "Puis-je payer par carte bancaire ?", "substitution"),
    ("¿Abren los sábados?", "¿Abren los domingos?", "substitution"),
    ("متى تفتحون؟", "متى تغلقون؟", "substitution"),
    ("Как отменить подписку?", "Как изменить подписку?", "substitution"),
    # scope: one side only adds a qualifier
    ("运费是多少？", "国际运费是多少？", "scope"),
    ("배송비는 얼마인가요?", "해외 배송비는 얼마인가요?", "scope"),
    ("¿Cuánto cuesta el envío?", "¿Cuánto cuesta el envío internacional?", "scope"),
    ("Wie lange dauert der Versand?", "Wie lange dauert der Versand nach Österreich?", "scope"),
    ("كم تكلفة الشحن؟", "كم تكلفة الشحن الدولي؟", "scope"),
]

REWORDINGS = [
    ("10公里等于多少英里？", "10公里是多少英里？"),  # the same number, other filler
    ("十二个月的套餐多少钱？", "12个月的套餐多少钱？"),  # 十二 is 12
    ("如何在Python中反转列表？", "Python里怎么把列表反转？"),  # the same name, words moved
    ("Какая погода будет завтра в Москве?", "Какая завтра погода в Москве?"),  # moved, but not around a cue
    ("Сколько миль в 10 километрах?", "10 километров это сколько миль?"),
    ("如何修改收货地址？", "怎么更改收货地址？"),  # listed synonyms
    ("如何重置我的密码？", "怎么重置密码？"),  # function words only
    ("パスワードをリセットするにはどうすればいいですか？", "パスワードのリセット方法を教えてください。"),
    ("비밀번호를 재설정하려면 어떻게 하나요?", "비밀번호를 어떻게 재설정하나요?"),  # Korean endings
    ("كيف أحذف حسابي؟", "كيف يمكنني حذف حسابي؟"),  # Arabic verb and verbal noun share a root
    ("Wie kündige ich mein Abonnement?", "Wie kann ich mein Abo kündigen?"),  # word forms
    ("¿Cómo restablezco mi contraseña?", "¿Cómo puedo restablecer mi contraseña?"),
    ("Comment réinitialiser mon mot de passe ?", "Comment puis-je réinitialiser mon mot de passe ?"),
    ("如何联系客服？", "怎么联系客服人员？"),  # an added word that narrows nothing
    ("我可以修改用户名吗？", "能不能修改我的用户名？"),  # 能不能 ("can or not") asks, it does not negate
    ("Wo finde ich meine Rechnung?", "Wo ist meine Rechnung?"),
    ("¿Puedo cambiar mi nombre de usuario?", "¿Es posible cambiar mi nombre de usuario?"),
    ("Comment changer mon adresse e-mail ?", "Comment modifier l'adresse e-mail de mon compte ?"),
]


@pytest.mark.parametrize(("cached", "incoming", "rule"), TRAPS)
def test_rejects_trap(cached: str, incoming: str, rule: str) -> None:
    assert find_conflict(cached, incoming) == rule
    assert find_conflict(incoming, cached) == rule


@pytest.mark.parametrize(("cached", "incoming"), REWORDINGS)
def test_lets_rewording_through(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming) is None
    assert find_conflict(incoming, cached) is None


def test_english_keeps_the_english_rules() -> None:
    assert not is_foreign("Wake me at 6am")  # "me" is Spanish too: one stray word does not make it Spanish
    assert find_conflict("Wake me at 6am", "Wake me at 6pm") == "number"
    assert is_foreign("¿Cómo elimino mi cuenta?") and is_foreign("如何删除我的账户？")
